"""The MLflow model registry: versions, their lineage tags, and the aliases that name roles.

`champion` is the model in service, `challenger` the newest registered candidate and
`previous_champion` the one it replaced (what a rollback returns to).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous_champion"


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


def register_candidate(
    client: MlflowClient, name: str, run_id: str, model_uri: str, tags: dict[str, str]
) -> RegisteredModel:
    """Register the run's model as a new version tagged with its lineage, alias `challenger`.

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
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return RegisteredModel(name, version, run_id, tags)


def promote_champion(client: MlflowClient, name: str, version: str) -> RegisteredModel:
    """Move `champion` to `version`, keeping the one it replaces as `previous_champion`."""
    previous = current_champion(client, name)
    if previous is not None and previous.version != version:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, previous.version)
    client.set_registered_model_alias(name, CHAMPION, version)
    promoted = current_champion(client, name)
    if promoted is None or promoted.version != version:
        raise RuntimeError(f"alias {CHAMPION!r} of {name} did not move to version {version}")
    return promoted
