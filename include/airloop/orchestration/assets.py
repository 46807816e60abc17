"""A model's Assets: what its DAGs signal to each other, under the model's own URIs.

`airloop://<model>/validated_data` and friends: one model's events never schedule another
model's runs, because no other model's DAG is scheduled on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow.sdk import Asset

# What an event on each trigger asset means to continuous training.
TRIGGER_OF_KIND = {"validated_data": "new_data", "drift_detected": "drift"}


def model_asset(model: str, kind: str) -> Asset:
    return Asset(name=f"{model}.{kind}", uri=f"airloop://{model}/{kind}", group="airloop")


def asset_kind(asset_name: str) -> str:
    """`validated_data` of `flights.validated_data`."""
    return asset_name.rpartition(".")[2]


KINDS = (
    "validated_data",
    "drift_detected",
    "champion_model",
    "batch_scores",
    "labelled_predictions",
    "rollout_requested",
)


@dataclass(frozen=True)
class ModelAssets:
    validated_data: Asset
    drift_detected: Asset
    champion_model: Asset
    # score_batch's outputs, for downstream consumers.
    batch_scores: Asset
    # New labels joined to the prediction log: live performance can be measured again.
    labelled_predictions: Asset
    # A candidate passed the gate and is to be rolled out (a canary or a shadow): roll_out runs.
    rollout_requested: Asset

    @classmethod
    def of(cls, model: str) -> ModelAssets:
        return cls(*(model_asset(model, kind) for kind in KINDS))

    @property
    def triggers(self) -> tuple[Asset, Asset]:
        """The assets whose events continuous training answers."""
        return (self.validated_data, self.drift_detected)
