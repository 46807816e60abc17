"""The MLflow model registry: versions, their lineage tags, and the aliases that name roles.

`champion` is the model in service, `challenger` the newest registered candidate and
`previous_champion` the one it replaced (what a rollback returns to).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous_champion"
# Set on every version airloop registers: the SHA-256 of its model files. Packaging checks
# the files it downloads against it, and refuses versions without it.
DIGEST_TAG = "airloop.model_sha256"
# The p95 one-record latency the gate measured: what the served model's latency alert
# compares its own p95 with.
LATENCY_TAG = "airloop.latency_p95_ms"


# MLflow rewrites this file, even in the artifact store itself, whenever a models:/ URI is
# downloaded from a local store: it records who asked, not what the model is.
_NOT_THE_MODEL = {"registered_model_meta"}


def artifact_digest(directory: Path) -> str:
    """SHA-256 over a model directory's files: their relative paths and their bytes, in path
    order (MLflow's download bookkeeping left out)."""
    digest = hashlib.sha256()
    files = (p for p in directory.rglob("*") if p.is_file() and p.name not in _NOT_THE_MODEL)
    for path in sorted(files):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def version_digest(client: MlflowClient, tracking_uri: str, name: str, version: str) -> str:
    """The digest of a registered version's model files, as downloaded from the registry."""
    from mlflow.artifacts import download_artifacts

    location = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory() as scratch:
        local = download_artifacts(artifact_uri=location, dst_path=scratch, tracking_uri=tracking_uri)
        return artifact_digest(Path(local))


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _by_alias(client: MlflowClient, name: str, alias: str) -> RegisteredModel | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None  # no such model or alias yet
    return RegisteredModel(name, str(found.version), str(found.run_id), dict(found.tags))


def current_champion(client: MlflowClient, name: str) -> RegisteredModel | None:
    return _by_alias(client, name, CHAMPION)


def previous_champion(client: MlflowClient, name: str) -> RegisteredModel | None:
    return _by_alias(client, name, PREVIOUS_CHAMPION)


def register_candidate(
    client: MlflowClient, name: str, run_id: str, model_uri: str, tags: dict[str, str], tracking_uri: str
) -> RegisteredModel:
    """Register the run's model as a new version tagged with its lineage and the digest of its
    files, alias `challenger`.

    Idempotent: a retry for the same MLflow run returns the version already registered.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # already exists
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = str(existing[0].version)
    else:
        version = str(mlflow.register_model(model_uri, name, tags=tags).version)
    tags = {**tags, DIGEST_TAG: version_digest(client, tracking_uri, name, version)}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return RegisteredModel(name, version, run_id, tags)


class ChampionChanged(RuntimeError):
    """The champion is no longer the version the candidate was compared with."""

    def __init__(self, name: str, expected: str | None, found: str | None) -> None:
        super().__init__(
            f"champion of {name} is v{found} now, not v{expected} as when the candidate was "
            "evaluated: evaluate again before promoting"
        )
        self.expected, self.found = expected, found


def promote_champion(
    client: MlflowClient, name: str, version: str, evaluated_against: str | None
) -> RegisteredModel:
    """Move `champion` to `version`, keeping the one it replaces as `previous_champion`.

    Compare-and-set: `evaluated_against` is the champion version the candidate was compared
    with (None for the first model); if the champion is another one now, raise
    ChampionChanged instead of overwriting a model nobody compared against. Hold the
    promotion lock around it. `previous_champion` moves first: a crash between the two
    moves leaves `champion` on the old, loadable version.
    """
    previous = current_champion(client, name)
    found = previous.version if previous else None
    if found == version:
        return previous  # type: ignore[return-value]  # a retry after the move
    if found != evaluated_against:
        raise ChampionChanged(name, evaluated_against, found)
    if previous is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, previous.version)
    client.set_registered_model_alias(name, CHAMPION, version)
    return _verified(client, name, version)


def roll_back_champion(client: MlflowClient, name: str) -> tuple[RegisteredModel, RegisteredModel]:
    """Move `champion` back to `previous_champion`; the version rolled back from becomes
    `previous_champion`, so a mistaken rollback is undone by another. Returns (new champion,
    rolled back). Hold the promotion lock around it."""
    champion = current_champion(client, name)
    previous = previous_champion(client, name)
    if champion is None or previous is None:
        raise RuntimeError(f"{name} has no {PREVIOUS_CHAMPION} to roll back to")
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    client.set_registered_model_alias(name, PREVIOUS_CHAMPION, champion.version)
    client.set_model_version_tag(name, champion.version, "airloop.rolled_back", "true")
    return _verified(client, name, previous.version), champion


def _verified(client: MlflowClient, name: str, version: str) -> RegisteredModel:
    promoted = current_champion(client, name)
    if promoted is None or promoted.version != version:
        raise RuntimeError(f"alias {CHAMPION!r} of {name} did not move to version {version}")
    return promoted
