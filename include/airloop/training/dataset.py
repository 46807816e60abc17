"""Assemble a training set and its frozen evaluation set from validated partitions.

The newest partition is the evaluation set, never seen in training; the
`split.window_partitions` partitions before it are the training set. While only one
partition exists, its newest rows (by `dataset.order_by`) are held out instead.
Both sets are written under a key derived from the partitions they contain and versioned
with DVC, so assembling the same window twice gives the same files and hashes.

With `labels.join_training`, the labelled production rows (what the served model was asked,
with the labels that came later: `airloop.production.labels_join`) join the training set,
the latest label of each prediction once; the evaluation set stays the newest partition.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from airloop.config import AirloopConfig
from airloop.data.frames import in_row_order
from airloop.data.ingest import partition_path, validated_partitions
from airloop.data.versioning import tracked_hash, version_file
from airloop.paths import StatePaths


@dataclass(frozen=True)
class TrainingWindow:
    train_partitions: list[str]
    eval_partition: str
    train_path: str
    eval_path: str
    train_hash: str
    eval_hash: str
    # The joined-labels partitions whose rows joined the training set (labels.join_training).
    labelled_partitions: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return asdict(self)


def _read(paths: StatePaths, partitions: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(partition_path(paths, p)) for p in partitions], ignore_index=True)


def _frames(
    config: AirloopConfig, paths: StatePaths, train_parts: list[str], eval_part: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if train_parts != [eval_part]:
        return _read(paths, train_parts), _read(paths, [eval_part])
    frame = _read(paths, [eval_part])
    frame = in_row_order(frame, config)
    cut = int(len(frame) * (1 - config.split.bootstrap_eval_fraction))
    return frame.iloc[:cut], frame.iloc[cut:]


def _window_key(paths: StatePaths, train_parts: list[str], eval_part: str, labelled: list[Path]) -> str:
    hashes = [tracked_hash(partition_path(paths, p)) for p in [*train_parts, eval_part]]
    hashes += [tracked_hash(path) for path in labelled]
    digest = hashlib.sha256("|".join(hashes).encode()).hexdigest()[:12]
    return f"{train_parts[0]}_{eval_part}_{digest}"


def assemble_training_set(config: AirloopConfig, paths: StatePaths) -> TrainingWindow:
    """Write and version the training and evaluation sets for the newest partitions."""
    partitions = validated_partitions(paths)
    if not partitions:
        raise RuntimeError(f"no validated partitions under {paths.partitions}: ingest data first")
    # A lone partition is both: _frames then holds out its newest rows.
    train_parts = partitions[-(config.split.window_partitions + 1) : -1] or partitions[-1:]
    eval_part = partitions[-1]
    labelled = _labelled_files(paths) if config.labels.join_training else []
    directory = paths.training_sets / _window_key(paths, train_parts, eval_part, labelled)
    directory.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = directory / "train.parquet", directory / "eval.parquet"
    if not (Path(f"{train_path}.dvc").exists() and Path(f"{eval_path}.dvc").exists()):
        train, evaluation = _frames(config, paths, train_parts, eval_part)
        if labelled:
            train = pd.concat([train, production_rows(config, paths)], ignore_index=True)
        train.to_parquet(train_path, index=False)
        evaluation.to_parquet(eval_path, index=False)
        version_file(train_path, paths)
        version_file(eval_path, paths)
    return TrainingWindow(
        train_partitions=train_parts,
        eval_partition=eval_part,
        train_path=str(train_path),
        eval_path=str(eval_path),
        train_hash=tracked_hash(train_path),
        eval_hash=tracked_hash(eval_path),
        labelled_partitions=[path.name for path in labelled],
    )


def _labelled_files(paths: StatePaths) -> list[Path]:
    """The joined-labels partitions versioned so far."""
    if not paths.labelled.is_dir():
        return []
    return sorted(p for p in paths.labelled.glob("*.parquet") if Path(f"{p}.dvc").exists())


def production_rows(config: AirloopConfig, paths: StatePaths) -> pd.DataFrame:
    """The labelled production rows as training rows: the features as served, the label, and
    the dataset's keys and order column where the log has them."""
    from airloop.production.labels_join import labelled_predictions

    rows = labelled_predictions(paths)
    dataset = config.dataset
    wanted = [
        *dataset.features,
        dataset.target.column,
        *dataset.keys,
        *([dataset.order_by] if dataset.order_by else []),
    ]
    return rows[[c for c in dict.fromkeys(wanted) if c in rows.columns]].reset_index(drop=True)


def split_validation(frame: pd.DataFrame, config: AirloopConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows and the newest `split.validation_fraction` of them, held out."""
    frame = in_row_order(frame, config)
    cut = int(len(frame) * (1 - config.split.validation_fraction))
    if cut == 0 or cut == len(frame):
        raise ValueError(
            f"{len(frame)} labelled training rows are too few to hold out "
            f"split.validation_fraction={config.split.validation_fraction} of them"
        )
    return frame.iloc[:cut], frame.iloc[cut:]


def require_columns(path: str | Path, config: AirloopConfig) -> None:
    """Raise naming the config keys whose columns a training file lacks (reads only its schema)."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    missing = [c for c in config.dataset.features if c not in present]
    problems = [f"dataset.features: {missing} not in {path}"] if missing else []
    if config.dataset.target.column not in present:
        problems.append(f"dataset.target.column: {config.dataset.target.column!r} not in {path}")
    if problems:
        raise ValueError("; ".join(problems))
