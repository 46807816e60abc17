"""Serving what a config can declare: multiclass answers, categories never seen in training,
date and datetime features sent as text, and /predict_one batched like /predict.

One module-scoped state directory holds a small multiclass model ("tiers": bronze, silver,
gold) trained the way the training stage builds pipelines, on a synthetic table with a str
column that declares `allowed:` (colour), one that does not (city), a date with a format
(signup, nullable), a datetime without one (seen_at), numbers and a bool. Its bento is
built once and served once by `bentoml serve` for the HTTP tests.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import airloop
from airloop.config import AirloopConfig, load_config, parse_config
from airloop.data.frames import feature_frame, read_table
from airloop.data.labels import CLASSES_METADATA, labels
from airloop.packaging.bento import build_bento, use_bentoml_home
from airloop.packaging.serving import post_json, served_bento
from airloop.packaging.skew import check_skew
from airloop.paths import StatePaths
from airloop.training.models import build_pipeline
from tests.unit.test_packaging import register_pipeline

pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")

CLASSES = ["bronze", "silver", "gold"]
CITIES = ["Cork", "Graz", "Kobe", "Lima", "Oslo", "Pune"]
COLOURS = ["blue", "green", "red"]
FEATURES = ["colour", "city", "signup", "seen_at", "amount", "visits", "member"]


def tiers_config(family: str = "xgboost", params: dict | None = None) -> AirloopConfig:
    data = load_config().model_dump(mode="json")
    data["task"] = "multiclass_classification"
    data["dataset"] = {
        "columns": {
            "colour": {"type": "str", "allowed": COLOURS},
            "city": {"type": "str"},
            "signup": {"type": "date", "format": "%Y-%m-%d", "nullable": True},
            "seen_at": {"type": "datetime"},
            "amount": {"type": "float", "nullable": True},
            "visits": {"type": "int"},
            "member": {"type": "bool"},
            "tier": {"type": "str"},
        },
        "target": {"column": "tier", "classes": CLASSES},
        "features": FEATURES,
    }
    default = {"n_estimators": 30, "max_depth": 4} if family == "xgboost" else {}
    data["model"] = {"family": family, "registered_name": "tiers", "params": params or default}
    data["gate"] = {"metric": "log_loss"}
    return parse_config(data, "test tiers")


def tiers_table(rows: int, seed: int, folder: Path) -> pd.DataFrame:
    """A table whose tier depends on the dates (signup's year, seen_at's hour), as read from CSV."""
    rng = np.random.default_rng(seed)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, rows), unit="D")
    seen = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, rows), unit="min")
    colour = rng.choice(COLOURS, rows)
    amount = rng.gamma(2.0, 50.0, rows)
    score = (
        (signup.year.to_numpy() - 2021.5)
        + 1.5 * (seen.hour.to_numpy() >= 18)
        + 0.8 * (colour == "blue")
        + amount / 150
        + rng.normal(0, 0.6, rows)
    )
    frame = pd.DataFrame(
        {
            "colour": colour,
            "city": rng.choice(CITIES, rows),
            "signup": pd.Series(signup.strftime("%Y-%m-%d")).where(rng.random(rows) > 0.05, None),
            "seen_at": seen.strftime("%Y-%m-%dT%H:%M:%S"),
            "amount": np.where(rng.random(rows) > 0.05, amount.round(2), np.nan),
            "visits": rng.poisson(5, rows),
            "member": rng.random(rows) < 0.4,
            "tier": np.select([score > 1.2, score > 0.0], ["gold", "silver"], "bronze"),
        }
    )
    path = folder / f"tiers-{seed}.csv"
    frame.to_csv(path, index=False)
    return read_table(path)


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        yield


def _register(config: AirloopConfig, pipeline: Any, x: pd.DataFrame, experiment: str) -> str:
    """Register the pipeline as the training stage logs it: classes in the metadata, airloop
    shipped as code for the date step."""
    return register_pipeline(
        config,
        pipeline,
        x.head(20),
        experiment,
        code_paths=[str(Path(airloop.__file__).parent)],
        metadata={CLASSES_METADATA: CLASSES},
    )


@dataclass(frozen=True)
class Tiers:
    config: AirloopConfig
    paths: StatePaths
    train: pd.DataFrame
    held_out: pd.DataFrame  # raw rows the model did not train on
    pipeline: Any
    model_uri: str
    bento: str


@pytest.fixture(scope="module")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiers]:
    import mlflow

    home = tmp_path_factory.mktemp("airloop")
    paths = StatePaths(home)
    config = tiers_config()
    train, held_out = tiers_table(2000, 0, home), tiers_table(300, 1, home)
    x, y = feature_frame(train, config), labels(train, config, CLASSES)
    pipeline = build_pipeline(config).fit(x, y)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRLOOP_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("BENTOML_HOME", str(paths.bentoml_home))
        patch.setenv("BENTOML_DO_NOT_TRACK", "True")
        with _tracking(paths.tracking_uri()):
            experiment = mlflow.create_experiment("tiers", artifact_location=paths.mlflow_artifacts.as_uri())
            version = _register(config, pipeline, x, experiment)
        uri = f"models:/{config.model.registered_name}/{version}"
        bento = build_bento(config, uri, version, paths)
        use_bentoml_home(paths)
        yield Tiers(config, paths, train, held_out, pipeline, uri, bento)


@pytest.fixture(scope="module")
def served(tiers: Tiers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_bento(tiers.bento, tiers.paths, tmp_path_factory.mktemp("serve") / "serve.log") as base:
        yield base


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame[FEATURES].to_json(orient="records"))


def _model_probabilities(tiers: Tiers, records: list[dict[str, Any]]) -> np.ndarray:
    """What the logged MLflow model says of the records, given as training frames are."""
    import mlflow

    with _tracking(tiers.paths.tracking_uri()):
        model = mlflow.sklearn.load_model(tiers.model_uri)
    return np.asarray(model.predict_proba(feature_frame(pd.DataFrame(records), tiers.config)))


def _post_raw(url: str, body: Any) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _unseen_count(base: str, column: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("airloop_unseen_categories_total{") and f'column="{column}"' in line
    )


def test_the_bento_records_allowed_and_trained_categories_date_formats_and_classes(tiers: Tiers) -> None:
    import bentoml

    args = bentoml.bentos.get(tiers.bento).info.args
    assert args["task"] == "multiclass_classification" and args["classes"] == CLASSES
    assert args["allowed"] == {"colour": COLOURS}
    assert args["trained_categories"] == {"colour": COLOURS, "city": CITIES}
    assert args["date_formats"] == {"signup": "%Y-%m-%d"}
    assert args["features"]["signup"] == "date" and args["features"]["seen_at"] == "datetime"


def test_multiclass_answers_name_the_class_and_match_the_mlflow_model(tiers: Tiers, served: str) -> None:
    records = _records(tiers.held_out.head(40))
    answers = post_json(f"{served}/predict", {"records": records})
    expected = _model_probabilities(tiers, records)

    served_probabilities = np.array([[a["probabilities"][c] for c in CLASSES] for a in answers])
    np.testing.assert_allclose(served_probabilities, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(served_probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [a["prediction"] for a in answers] == [CLASSES[i] for i in expected.argmax(axis=1)]
    assert all(a["score"] == max(a["probabilities"].values()) for a in answers)
    fields = {"prediction", "score", "probabilities", "model_name", "model_version", "model_semver"}
    assert all(set(a) == {*fields, "inference_id"} for a in answers)
    assert len({a["prediction"] for a in answers}) > 1  # the model tells the tiers apart


def test_dates_are_served_raw_and_scored_as_the_model_scores_them(tiers: Tiers, served: str) -> None:
    records = _records(tiers.held_out.head(12))
    moved = [dict(r) for r in records]
    for i, record in enumerate(moved):
        record["signup"] = None if i == 0 else f"{2020 + i % 4}-0{1 + i % 9}-1{i % 10}"
        # With a zone: read as UTC, as training reads such text.
        record["seen_at"] = f"2024-03-05T{(i * 5) % 24:02d}:15:00" + ("+02:00" if i % 2 else "")
    answers = post_json(f"{served}/predict", {"records": moved})
    expected = _model_probabilities(tiers, moved)
    served_probabilities = np.array([[a["probabilities"][c] for c in CLASSES] for a in answers])
    np.testing.assert_allclose(served_probabilities, expected, rtol=0, atol=1e-6)
    # The dates matter to this model: moving them moved its answers.
    assert np.abs(expected - _model_probabilities(tiers, records)).max() > 0.05


def test_a_category_unseen_in_training_is_served_and_counted_where_nothing_is_allowed(
    tiers: Tiers, served: str
) -> None:
    record = {**_records(tiers.held_out.head(1))[0], "city": "Atlantis"}
    before = _unseen_count(served, "city")

    status, answer = _post_raw(f"{served}/predict", {"records": [record, record]})
    assert status == 200, answer
    status, one = _post_raw(f"{served}/predict_one", {"record": record})
    assert status == 200, one

    expected = _model_probabilities(tiers, [record])[0]  # the encoder's unknown bucket
    for got in [*json.loads(answer), json.loads(one)]:
        np.testing.assert_allclose([got["probabilities"][c] for c in CLASSES], expected, atol=1e-6)
    deadline = time.monotonic() + 10
    while _unseen_count(served, "city") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _unseen_count(served, "city") == before + 3
    assert _unseen_count(served, "colour") == 0


def test_a_value_outside_allowed_is_refused_naming_the_field(tiers: Tiers, served: str) -> None:
    record = {**_records(tiers.held_out.head(1))[0], "colour": "purple"}
    for route, body in (("predict", {"records": [record]}), ("predict_one", {"record": record})):
        status, answer = _post_raw(f"{served}/{route}", body)
        assert status == 400 and "colour" in answer, f"/{route}: {status} {answer[:300]}"


def test_a_date_that_does_not_read_is_refused_naming_the_field(tiers: Tiers, served: str) -> None:
    good = _records(tiers.held_out.head(1))[0]
    bad = {
        "a month 13": ("signup", "2023-13-01"),
        "another format than declared": ("signup", "30/06/2023"),
        "text": ("seen_at", "yesterday-ish"),
        "a number": ("seen_at", 1700000000),
        "null where not nullable": ("seen_at", None),
    }
    for case, (field, value) in bad.items():
        for route, body in (
            ("predict", {"records": [{**good, field: value}]}),
            ("predict_one", {"record": {**good, field: value}}),
        ):
            status, answer = _post_raw(f"{served}/{route}", body)
            assert status == 400 and field in answer, f"{case} /{route}: {status} {answer[:300]}"
    # A nullable date may be null; a datetime without a declared format reads ISO 8601 and
    # other unambiguous forms.
    for field, value in (("signup", None), ("seen_at", "2024-02-29 23:59"), ("seen_at", "2024-02-29")):
        status, answer = _post_raw(f"{served}/predict", {"records": [{**good, field: value}]})
        assert status == 200, f"{field}={value!r}: {answer[:300]}"


def test_predict_one_answers_what_predict_answers_under_concurrency(tiers: Tiers, served: str) -> None:
    records = _records(tiers.held_out.head(48))
    batch = post_json(f"{served}/predict", {"records": records})
    # Concurrent requests are scored together; each must still get its own record's answer.
    with ThreadPoolExecutor(max_workers=16) as pool:
        ones = list(pool.map(lambda r: post_json(f"{served}/predict_one", {"record": r}), records))
        singles = list(pool.map(lambda r: post_json(f"{served}/predict", {"records": [r]})[0], records))
    for mine, *others in zip(ones, batch, singles, strict=True):
        for theirs in others:
            # Every answer has its own inference id; the rest must agree.
            unlike = ("score", "probabilities", "inference_id")
            assert {k: v for k, v in mine.items() if k not in unlike} == {
                k: v for k, v in theirs.items() if k not in unlike
            }
            probabilities = [[answer["probabilities"][c] for c in CLASSES] for answer in (mine, theirs)]
            np.testing.assert_allclose(*probabilities, rtol=0, atol=1e-6)


def test_the_skew_check_holds_for_a_multiclass_model_with_dates_and_unseen_categories(tiers: Tiers) -> None:
    rows = tiers.held_out.head(81).copy()
    rows.loc[rows.index[:10], "city"] = "Atlantis"  # served through the unknown bucket: kept
    rows.loc[rows.index[10], "colour"] = "purple"  # refused by design: left out
    summary = check_skew(tiers.config, tiers.paths, tiers.bento, tiers.model_uri, rows, rows=200)
    assert summary["rows"] == 80 and summary["max_abs_difference"] <= 1e-6


def _service_module(tiers: Tiers) -> Any:
    """The tiers bento's service module, imported in process as `bentoml serve` imports it."""
    import sys

    import bentoml

    sys.modules.pop("service", None)
    loaded: Any = bentoml.load(tiers.bento)
    return sys.modules[loaded.inner.__module__]


@pytest.mark.parametrize("family", ["xgboost", "torch_mlp", "sklearn_linear"])
def test_compiled_inputs_read_dates_exactly_as_the_pipeline(tiers: Tiers, family: str) -> None:
    """Each family's preprocessing (dates as parts; imputed and scaled for the linear and
    network families), built from JSON records: the pipeline's own matrix, bit for bit."""
    module = _service_module(tiers)
    config = tiers_config(family)
    prep = build_pipeline(config).steps[0][1].fit(feature_frame(tiers.train, config))
    records = _records(tiers.held_out.head(30))
    records[0]["signup"], records[1]["amount"], records[2]["city"] = None, None, "Atlantis"
    records[3]["seen_at"] = "2024-06-01T23:30:00-05:00"
    encode = module.compiled_inputs(SimpleNamespace(steps=[("prep", prep), ("model", None)]), module.ARGS)
    frame = module.feature_frame(records, module.ARGS)
    if family == "sklearn_linear":
        assert encode is None  # one-hot columns: served through the pipeline
        expected = prep.transform(feature_frame(pd.DataFrame(records), config))
        np.testing.assert_array_equal(prep.transform(frame), expected)
    else:
        np.testing.assert_array_equal(encode(records), prep.transform(frame))


def test_serve_args_keep_class_types_and_refuse_what_does_not_fit(tiers: Tiers) -> None:
    from pydantic import ValidationError

    module = _service_module(tiers)
    base = {"model_tag": "m:v1", "registered_name": "m", "registry_version": "1"}
    features = {"kind": "str", "day": "date", "n": "int"}
    args = module.ServeArgs(
        **base, task="multiclass_classification", features=features, classes=[True, 2, "x"]
    )
    assert [type(c) for c in args.classes] == [bool, int, str]
    wrong = {
        "no classes": {"task": "multiclass_classification"},
        "one class": {"task": "multiclass_classification", "classes": ["a"]},
        "classes of a binary model": {"task": "binary_classification", "classes": ["a", "b"]},
        "allowed of a number": {"task": "regression", "allowed": {"n": ["1"]}},
        "a format of a str": {"task": "regression", "date_formats": {"kind": "%Y"}},
    }
    for case, changes in wrong.items():
        with pytest.raises(ValidationError):
            module.ServeArgs(**base, features=features, **changes)
        assert case
    record = module.record_model(
        module.ServeArgs(**base, task="regression", features=features, date_formats={"day": "%d.%m.%Y"})
    )
    assert record.model_validate({"kind": "a", "day": "29.02.2024", "n": 1})
    with pytest.raises(ValidationError, match=r"day[\s\S]*'2024-02-29' is not a date in format '%d.%m.%Y'"):
        record.model_validate({"kind": "a", "day": "2024-02-29", "n": 1})
