"""DAG integrity: every DAG file imports, is cheap to parse, and follows the house rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airloop.paths import PROJECT_ROOT
from tests.conftest import HEAVY_MODULES

DAGS_FOLDER = PROJECT_ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if p.name != "airloop_wiring.py")
EXPECTED_DAGS = {"ingest_data", "continuous_training", "monitor_drift", "extract_sql", "rollback_champion"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    # The dag-processor puts the bundle (the DAGs folder) on sys.path: that is how the DAG
    # files share airloop_wiring.py.
    if str(DAGS_FOLDER) not in sys.path:
        sys.path.insert(0, str(DAGS_FOLDER))
    return DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=False)


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_the_three_dags_exist(dagbag) -> None:
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_id_is_the_file_name_and_one_dag_per_file(dagbag, dag_file) -> None:
    in_file = [d for d in dagbag.dags.values() if d.fileloc == str(dag_file)]
    assert [d.dag_id for d in in_file] == [dag_file.stem]


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_house_rules(dagbag, dag_id) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False
    assert "airloop" in dag.tags and len(dag.tags) >= 2
    assert dag.doc_md and len(dag.doc_md) > 100
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
        assert task.owner == "airloop"


def test_no_cycles(dagbag) -> None:
    from airflow.sdk.definitions.dag import DAG

    for dag in dagbag.dags.values():
        assert isinstance(dag, DAG)
        # topological_sort raises on a cycle
        assert len(dag.topological_sort()) == len(dag.tasks)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_parses_fast_without_heavy_imports(dag_file) -> None:
    """In a fresh interpreter with Airflow already loaded (as the dag-processor has it)."""
    probe = (
        "import sys, time, runpy, airflow.sdk\n"
        f"sys.path.insert(0, {str(DAGS_FOLDER)!r})\n"
        "start = time.perf_counter()\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        "print('PARSE_SECONDS', time.perf_counter() - start)\n"
        f"print('HEAVY', *(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    found = dict(
        line.partition(" ")[::2] for line in done.stdout.splitlines() if line.startswith(("PARSE_", "HEAVY"))
    )
    seconds, heavy = float(found["PARSE_SECONDS"]), found["HEAVY"].strip()
    assert seconds < 2.0
    assert heavy == "", f"{dag_file.name} imports {heavy} at parse time"


@pytest.mark.parametrize(
    ("source", "first_task"),
    [
        ({"kind": "files", "pattern": "*.csv"}, "wait_for_landed_file"),
        (
            {"kind": "files", "pattern": "*.csv", "location": "file:///tmp/airloop-bucket"},
            "fetch_from_object_storage",
        ),
    ],
)
def test_ingest_waits_the_way_its_source_needs(tmp_path, source, first_task) -> None:
    import os

    import yaml

    from tests.conftest import FLIGHTS_CONFIG

    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["dataset"]["source"] = source
    config = tmp_path / "variant.yaml"
    config.write_text(yaml.safe_dump(raw))
    probe = (
        f"import sys; sys.path.insert(0, {str(DAGS_FOLDER)!r})\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_FOLDER)!r}, safe_mode=False)\n"
        "print('ERRORS', len(bag.import_errors))\n"
        "print('ROOTS', *sorted(t.task_id for t in bag.dags['ingest_data'].roots))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          env={**os.environ, "AIRLOOP_CONFIG": str(config)})  # fmt: skip
    lines = dict(
        line.partition(" ")[::2] for line in done.stdout.splitlines() if line.startswith(("ERRORS", "ROOTS"))
    )
    assert lines == {"ERRORS": "0", "ROOTS": first_task}


@pytest.mark.parametrize("dag_id", ["continuous_training", "monitor_drift"])
def test_the_trigger_form_has_typed_described_params_that_reach_the_config(dagbag, dag_id) -> None:
    from airloop.config import load_config
    from airloop.run_params import config_for_run

    params = dagbag.dags[dag_id].params
    assert params, f"{dag_id} has no trigger form"
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("type") and param.schema.get("title") and len(param.description or "") > 20, (
            name
        )
    config = load_config()
    # The form's defaults leave the config as it is.
    assert config_for_run(config, dag_id, params.dump()) == config
