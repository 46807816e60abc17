"""Package one registered MLflow model version as a BentoML bento that serves exactly it.

Registry version N of model `<name>` becomes, in the BentoML store at `paths.bentoml_home`:

    models/<name>/vN/                 BentoML model "<name>:vN": the MLflow model copied in
                                      (mlflow_model/), labelled with its registry source
    bentos/<name>-service/vN/         bento "<name>-service:vN": src/service.py and a
                                      bento.yaml whose `args` name model "<name>:vN"

(`<name>` is the registered name, lower-cased, as BentoML tags require.) Tags are derived
from the registry version, so building twice finds the first bento and stops there.

Serve it with `BENTOML_HOME=<paths.bentoml_home> bentoml serve <name>-service:vN`: a bento
in the local store refers to its model instead of copying it, so the server must see the
same store.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from airloop.config import AirloopConfig
from airloop.paths import StatePaths
from airloop.registry.semver import SEMVER_TAG
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import DIGEST_TAG, artifact_digest

log = logging.getLogger(__name__)

SERVICE_FILE = Path(__file__).with_name("service.py")
# What the service imports beside itself: the prediction log's writer, the shadow's copier.
COMPANION_FILES = tuple(Path(__file__).with_name(f) for f in ("prediction_sink.py", "shadow_mirror.py"))
SERVICE_MODULE = SERVICE_FILE.stem
SERVICE_CLASS = "TabularModel"
# Where the MLflow model sits inside the BentoML model (service.py's MLFLOW_MODEL_FOLDER).
MODEL_FOLDER = "mlflow_model"
MODEL_REQUIREMENTS = f"{MODEL_FOLDER}/requirements.txt"
SOURCE_LABEL = "mlflow_source"
# models:/<name>/<version> or models:/<name>@<alias>
_REGISTRY_URI = re.compile(r"^models:/([^/@]+)(?:/(\d+)|@([^/]+))$")


def version_label(registry_version: str | int) -> str:
    """The BentoML version for an MLflow registry version: "3" -> "v3"."""
    number = str(registry_version).removeprefix("v")
    if not number.isdigit():
        raise ValueError(f"registry version must be a number like '3', not {registry_version!r}")
    return f"v{number}"


def model_tag(config: AirloopConfig, registry_version: str | int) -> str:
    """The BentoML model tag for a registry version, e.g. "flights-late-arrival:v3"."""
    return f"{config.model.registered_name.lower()}:{version_label(registry_version)}"


def bento_tag(config: AirloopConfig, registry_version: str | int) -> str:
    """The bento tag for a registry version, e.g. "flights-late-arrival-service:v3"."""
    return f"{config.model.registered_name.lower()}-service:{version_label(registry_version)}"


def use_bentoml_home(paths: StatePaths) -> None:
    """Point this process's BentoML (and any `bentoml` it starts) at paths.bentoml_home.

    BentoML reads BENTOML_HOME once, the first time it touches a store, and caches the
    stores; if this process already used another home, the cached stores are re-pointed.
    """
    home = paths.bentoml_home
    for sub in ("bentos", "models", "envs", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(home)
    # Usage tracking phones home on every build and serve; these machines may be offline.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    if Path(BentoMLContainer.bentoml_home.get()) == home:
        return
    log.info("re-pointing BentoML stores at %s", home)
    BentoMLContainer.bentoml_home.set(str(home))
    for provider, sub in (
        (BentoMLContainer.bento_store_dir, "bentos"),
        (BentoMLContainer.model_store_dir, "models"),
        (BentoMLContainer.env_store_dir, "envs"),
        (BentoMLContainer.tmp_bento_store_dir, "tmp"),
    ):
        provider.set(str(home / sub))
    BentoMLContainer.bento_store.set(BentoStore(str(home / "bentos")))
    BentoMLContainer.tmp_bento_store.set(BentoStore(str(home / "tmp")))
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))


def build_bento(config: AirloopConfig, model_uri: str, registry_version: str, paths: StatePaths) -> str:
    """Import an MLflow model into the BentoML store and build the bento that serves it.

    `model_uri` names the MLflow model to package, registry version `registry_version` of
    `config.model.registered_name`: "models:/flights-late-arrival/3", or an alias of that
    version ("models:/flights-late-arrival@challenger"); anything else raises. The model
    becomes BentoML model `model_tag(config, registry_version)`, the bento
    `bento_tag(config, registry_version)`, whose service loads exactly that model.
    Returns the bento tag.

    Idempotent: an existing bento for the version is returned as is, and an existing
    BentoML model is reused, unless it was imported from a different MLflow model (the
    registry was reset under a kept store): that raises instead of serving the wrong model.
    """
    use_bentoml_home(paths)
    import bentoml
    from bentoml.exceptions import NotFound

    bento = bento_tag(config, registry_version)
    model = model_tag(config, registry_version)
    version = version_label(registry_version).removeprefix("v")

    # The registry is named explicitly, never through mlflow.set_tracking_uri, which would
    # change the process-wide store for whatever runs next in this process.
    client = tracking_client(paths)
    name = config.model.registered_name
    _check_model_uri(client, model_uri, name, version)
    registered = client.get_model_version(name, version)
    source = str(registered.source)
    expected_digest = registered.tags.get(DIGEST_TAG)
    if expected_digest is None:
        raise ValueError(
            f"version {version} of {name} was not registered by airloop (no {DIGEST_TAG} tag): "
            "only models this pipeline trained, gated and registered are packaged"
        )

    try:
        bentoml.bentos.get(bento)
    except NotFound:
        pass
    else:
        _check_source(bentoml.models.get(model), source, model)
        log.info("bento %s already built", bento)
        return bento

    try:
        stored = bentoml.models.get(model)
    except NotFound:
        # Downloaded from where the registry keeps this version: MLflow resolves a models:/
        # URI through the process-wide registry URI, whatever registry it is handed.
        location = client.get_model_version_download_uri(name, version)
        stored = _import_model(model, location, paths.tracking_uri(), model_uri, source, expected_digest)
        log.info("imported %s (%s) as BentoML model %s", model_uri, source, model)
    else:
        _check_source(stored, source, model)

    # `bentoml.build` imports the service module by name and keeps it in sys.modules; a
    # module cached by an earlier build would still hold that build's arguments.
    sys.modules.pop(SERVICE_MODULE, None)
    for companion in COMPANION_FILES:
        sys.modules.pop(companion.stem, None)
    built = bentoml.build(
        f"{SERVICE_MODULE}:{SERVICE_CLASS}",
        name=bento.partition(":")[0],
        version=bento.partition(":")[2],
        build_ctx=str(SERVICE_FILE.parent),
        include=[SERVICE_FILE.name, *(f.name for f in COMPANION_FILES)],
        labels={SOURCE_LABEL: source, "registered_name": config.model.registered_name},
        description=f"Serves {config.model.registered_name} version {version} ({model_uri}).",
        python={
            "packages": _requirements(Path(stored.path_of(MODEL_REQUIREMENTS))),
            # Locking resolves the packages against PyPI at build time (network, tens of
            # seconds); MLflow already pinned what the model needs.
            "lock_packages": False,
        },
        args={
            **_service_args(
                config, model, version, Path(stored.path_of(MODEL_FOLDER)), registered.tags.get(SEMVER_TAG)
            ),
            "prediction_buckets": _prediction_buckets(config, paths, registered.run_id),
        },
    )
    log.info("built bento %s", built.tag)
    return str(built.tag)


def _check_model_uri(client: Any, model_uri: str, name: str, version: str) -> None:
    """Refuse a model_uri that is not registry version `version` of `name`."""
    match = _REGISTRY_URI.match(model_uri)
    if match is None:
        raise ValueError(f"model_uri must look like models:/{name}/{version} or models:/{name}@alias")
    uri_name, uri_version, alias = match.groups()
    if alias is not None:
        uri_version = str(client.get_model_version_by_alias(uri_name, alias).version)
    if (uri_name, uri_version) != (name, version):
        raise ValueError(f"{model_uri} is version {uri_version} of {uri_name}, not {version} of {name}")


def _import_model(
    tag: str, location: str, tracking_uri: str, model_uri: str, source: str, expected_digest: str
) -> Any:
    """Copy the MLflow sklearn model at `location` into a new BentoML model, after checking
    its files against the digest taken at registration.

    The BentoML model is saved only if this succeeds.
    """
    import bentoml
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    labels = {SOURCE_LABEL: source}
    with bentoml.models.create(tag, labels=labels, metadata={"model_uri": model_uri}) as stored:
        target = Path(stored.path_of(MODEL_FOLDER))
        scratch = Path(tempfile.mkdtemp(dir=stored.path))
        local = download_artifacts(artifact_uri=location, dst_path=str(scratch), tracking_uri=tracking_uri)
        shutil.move(local, target)
        shutil.rmtree(scratch, ignore_errors=True)
        found = artifact_digest(target)
        if found != expected_digest:
            raise ValueError(
                f"{model_uri}: the downloaded model files have SHA-256 {found}, not {expected_digest} "
                "as registered: they changed after registration; refusing to package them"
            )
        if not (target / "MLmodel").is_file():
            raise ValueError(f"{model_uri} is not an MLflow model (no MLmodel file)")
        if "sklearn" not in Model.load(str(target)).flavors:
            raise ValueError(f"{model_uri} has no sklearn flavor; the service loads sklearn models")
    return stored


def _service_args(
    config: AirloopConfig, model: str, version: str, mlflow_model: Path, semver: str | None = None
) -> dict[str, Any]:
    """The template arguments service.py reads (see its docstring); `semver` is the version's
    semantic version (None for one registered without)."""
    import mlflow.sklearn

    dataset = config.dataset
    columns = dataset.columns
    pipeline = mlflow.sklearn.load_model(str(mlflow_model))
    args: dict[str, Any] = {
        "model_tag": model,
        "registered_name": config.model.registered_name,
        "registry_version": version,
        "semver": semver,
        "task": config.task,
        "features": {name: columns[name].type for name in dataset.features},
        "nullable": [name for name in dataset.features if columns[name].nullable],
        "allowed": {
            name: sorted(str(v) for v in allowed)
            for name in dataset.features
            if columns[name].type == "str" and (allowed := columns[name].allowed)
        },
        "trained_categories": _trained_categories(config, pipeline),
        "date_formats": {
            name: fmt for name in dataset.date_features() if (fmt := columns[name].format) is not None
        },
        "keys": {name: columns[name].type for name in config.logged_keys()},
        "pii": {
            name: mode for name, mode in config.pii_columns().items()
            if name in dataset.features or name in config.logged_keys()
        },
        "log": config.serving.log.model_dump(),
    }
    if config.task == "multiclass_classification":
        args["classes"] = _model_classes(pipeline, mlflow_model)
    return args


def _prediction_buckets(config: AirloopConfig, paths: StatePaths, run_id: str | None) -> list[float]:
    """Regression: the deciles of the model's predictions on its training rows (from the
    reference profile its run logged), the buckets Prometheus counts predictions in."""
    if config.task != "regression" or not run_id:
        return []
    import mlflow
    import numpy as np
    from mlflow.exceptions import MlflowException

    from airloop.monitoring.reference import REFERENCE_ARTIFACT, ReferenceProfile

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=paths.tracking_uri()
        )
    except (MlflowException, OSError):
        return []
    predictions = ReferenceProfile.load(Path(local)).predictions
    if predictions is None or not predictions.rows:
        return []
    share = np.cumsum(predictions.counts) / predictions.rows
    edges = [float(predictions.values[np.searchsorted(share, q)]) for q in np.linspace(0.1, 0.9, 9)]
    return sorted(set(edges))


def _trained_categories(config: AirloopConfig, pipeline: Any) -> dict[str, list[str]]:
    """Per str feature: the values the model's encoder was fitted on (a null is no value)."""
    from airloop.data.frames import MISSING_CATEGORY

    encoder = getattr(pipeline, "named_steps", {}).get("prep")
    fitted = getattr(encoder, "named_transformers_", {}).get("categorical")
    if fitted is None or not hasattr(fitted, "categories_"):
        return {}
    names = config.dataset.categorical_features()
    trained = dict(zip(names, fitted.categories_, strict=True))
    return {
        name: sorted(str(v) for v in values if str(v) != MISSING_CATEGORY)
        for name, values in trained.items()
        if config.dataset.columns[name].type == "str"
    }


def _model_classes(pipeline: Any, mlflow_model: Path) -> list[Any]:
    """A multiclass model's classes in code order, from its MLflow metadata; raise without them."""
    from mlflow.models import Model

    from airloop.data.labels import CLASSES_METADATA, model_classes

    classes = model_classes(Model.load(str(mlflow_model)).metadata)
    if not classes:
        raise ValueError(
            f"the multiclass model at {mlflow_model} lists no classes (MLflow model metadata "
            f"{CLASSES_METADATA!r}): its answers could not name them; refusing to package it"
        )
    fitted = getattr(pipeline.steps[-1][1], "classes_", None) if hasattr(pipeline, "steps") else None
    if fitted is not None and len(fitted) != len(classes):
        raise ValueError(
            f"the multiclass model at {mlflow_model} scores {len(fitted)} classes but its metadata "
            f"lists {len(classes)} ({classes}); refusing to package it"
        )
    return list(classes)


def _requirements(path: Path) -> list[str]:
    """The MLflow model's pinned pip requirements (for the bento's container image)."""
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _check_source(stored: Any, source: str, tag: str) -> None:
    found = stored.info.labels.get(SOURCE_LABEL)
    if found != source:
        raise RuntimeError(
            f"BentoML model {tag} ({stored.path}) was imported from {found!r}, but the registry "
            f"now says this version is {source!r}: the BentoML store belongs to another registry. "
            "Delete the model and its bento (`bentoml models delete`, `bentoml delete`), or use a "
            "fresh AIRLOOP_HOME."
        )
