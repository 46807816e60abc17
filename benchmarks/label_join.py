"""Labels joined to the prediction log at 1M × 1M: airloop's join vs a plain pandas merge.

    .venv/bin/python benchmarks/label_join.py [--rows 1000000] [--files 10] [--rounds 5]
                                              [--profile]

In a fresh state dir (configs/flights.yaml) it writes a prediction log of `--rows`
predictions with the real writer (`prediction_sink.log_schema`, `frame_table`,
`write_table`): `--files` Parquet files, each a batch of real 2013 flights rows (features
and the logged keys) with fresh inference ids, scores and predictions. Then one Parquet
labels file of `--rows` rows, as a user would land it: 90% labels of logged predictions
(in random order), 5% ids the log never saw, 5% second labels of already-labelled
predictions, with a later `labelled_at` (the later one must win).

Timed, in turns, `--rounds` times, in one process (the libraries imported first):

- airloop, in memory: what `join_labels_file` does before it writes anything:
  `read_labels` (the labels file read, typed, deduplicated), `read_log` + `served_frame`
  (the log's files within `labels.max_age_days`), `match_predictions`. The target is
  about this: at most 5 s.
- plain pandas, what a user would otherwise write: read both (`pd.read_parquet` of the
  labels file and of the log's folder), `drop_duplicates` on the labels (the latest per
  id), `merge` on the inference id.
- airloop end to end, once per round after the two above: `join_labels_file` on the file
  landed (a copy under a new name each round): hashing the file, the join, writing the
  partition, versioning it with DVC (add + push) and filing the file and its report.

`--profile` prints cProfile's top functions of one in-memory join. Prints Markdown: the
steps' medians, the ratio to plain pandas, the counts, and whether both joins agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig, load_config
from airloop.paths import StatePaths


def write_log(config: AirloopConfig, paths: StatePaths, rows: int, files: int, seed: int) -> np.ndarray:
    """`rows` logged predictions in `files` files, written as the service and batch scoring
    write them; returns their inference ids."""
    import pyarrow as pa

    from airloop.demo.flights import flights
    from airloop.packaging.prediction_sink import frame_table, log_schema, write_table
    from airloop.production.predictions import log_location

    rng = np.random.default_rng(seed)
    dataset = config.dataset
    features: dict[str, str] = {name: dataset.columns[name].type for name in dataset.features}
    keys: dict[str, str] = {name: dataset.columns[name].type for name in config.logged_keys()}
    schema = log_schema(config.task, features, keys, {}, hashing=False)
    table = flights()
    raw = np.frombuffer(rng.bytes(16 * rows), dtype="S16")
    ids = np.array([value.hex() for value in raw.tolist()], dtype=object)
    root = log_location(config, paths)
    served_at = datetime.now(UTC) - timedelta(hours=files)
    for part, chunk in enumerate(np.array_split(np.arange(rows), files)):
        records = table.iloc[rng.integers(0, len(table), len(chunk))].reset_index(drop=True)
        scores = rng.random(len(chunk))
        moment = served_at + timedelta(hours=part)
        answers = {
            "inference_id": pa.array(ids[chunk], pa.string()),
            "prediction": (scores >= 0.5).astype("int64"),
            "score": scores,
            "probabilities": None,
            "served_at": int(moment.timestamp() * 1000),
            "latency_ms": 3.0,
        }
        logged = frame_table(
            records, answers, schema, config.model.registered_name, "1", "batch" if part % 2 else "served",
            None, {**features, **keys},
        )  # fmt: skip
        write_table(root, logged, moment)
    return ids


def write_labels(ids: np.ndarray, path: Path, seed: int) -> dict[str, int]:
    """A labels file of len(ids) rows: 90% logged ids, 5% unknown, 5% later second labels."""
    rng = np.random.default_rng(seed + 1)
    rows = len(ids)
    known, unknown = int(rows * 0.9), int(rows * 0.05)
    again = rows - known - unknown
    labelled = rng.permutation(ids)[:known]
    strangers = np.array([v.hex() for v in np.frombuffer(rng.bytes(16 * unknown), dtype="S16").tolist()])
    seconds = rng.integers(0, 86_400, rows)
    start = pd.Timestamp("2026-11-30", tz="UTC")
    frame = pd.DataFrame(
        {
            "inference_id": np.concatenate([labelled, strangers, labelled[:again]]).astype(object),
            "arr_delay": np.round(rng.normal(7, 40, rows)).astype("float64"),
            "labelled_at": start + pd.to_timedelta(seconds, unit="s"),
        }
    )
    # The second labels come a day after the first: they must replace them.
    frame.loc[known + unknown :, "labelled_at"] += pd.Timedelta(days=1)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame.to_parquet(path, index=False)
    return {"known": known, "unknown": unknown, "second_labels": again}


def airloop_in_memory(config: AirloopConfig, paths: StatePaths, path: Path) -> tuple[dict[str, float], Any]:
    """The join as `join_labels_file` runs it, before writing: each step's seconds."""
    from airloop.production.labels_join import match_predictions, read_labels
    from airloop.production.predictions import read_log, served_frame

    now = datetime.now(UTC)
    times: dict[str, float] = {}
    started, cpu = time.perf_counter(), time.process_time()
    labels, counts = read_labels(config, path, now)
    times["read_labels"] = time.perf_counter() - started
    mark = time.perf_counter()
    log = served_frame(read_log(config, paths, since=now - timedelta(days=config.labels.max_age_days)))
    times["read_log"] = time.perf_counter() - mark
    mark = time.perf_counter()
    joined, unmatched = match_predictions(config, paths, labels, log)
    times["match_predictions"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - started
    times["cpu"] = time.process_time() - cpu
    counts.update(joined=len(joined), unmatched=unmatched)
    return times, (joined, counts)


def plain_pandas(paths: StatePaths, path: Path) -> tuple[dict[str, float], pd.DataFrame]:
    """What a user would write: read both, the latest label per id, merge."""
    started, cpu = time.perf_counter(), time.process_time()
    labels = pd.read_parquet(path)
    log = pd.read_parquet(paths.prediction_log)
    read = time.perf_counter() - started
    latest = labels.sort_values("labelled_at", kind="stable").drop_duplicates("inference_id", keep="last")
    joined = latest.merge(log, on="inference_id", how="inner")
    total = time.perf_counter() - started
    return {"read": read, "merge": total - read, "total": total, "cpu": time.process_time() - cpu}, joined


def end_to_end(
    config: AirloopConfig, paths: StatePaths, path: Path, turn: int
) -> tuple[dict[str, float], dict]:
    from airloop.production.labels_join import join_labels_file

    paths.labels_landing.mkdir(parents=True, exist_ok=True)
    landed = paths.labels_landing / f"labels-{turn}.parquet"
    shutil.copyfile(path, landed)
    started, cpu = time.perf_counter(), time.process_time()
    report = join_labels_file(config, paths, landed)
    return {"total": time.perf_counter() - started, "cpu": time.process_time() - cpu}, report


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def timed(label: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    value = step()
    print(f"{label}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one in-memory join")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import dvc.repo  # noqa: F401 - imported before any clock starts, as in a warm task
    import pyarrow.dataset  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="airloop-label-join-") as tmp:
        paths = StatePaths(Path(tmp) / "state")
        paths.home.mkdir(parents=True)
        os.environ["AIRLOOP_HOME"] = str(paths.home)
        config = load_config()
        labels_file = Path(tmp) / "labels.parquet"
        made = timed(
            "writing the log and the labels",
            lambda: write_labels(
                write_log(config, paths, args.rows, args.files, args.seed), labels_file, args.seed
            ),
        )

        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(airloop_in_memory, config, paths, labels_file)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)

        ours, plain, whole = [], [], []
        agree = True
        for turn in range(args.rounds):
            times, (joined, counts) = airloop_in_memory(config, paths, labels_file)
            ours.append(times)
            plain_times, merged = plain_pandas(paths, labels_file)
            plain.append(plain_times)
            agree &= len(joined) == len(merged) and set(joined["inference_id"]) == set(merged["inference_id"])
            check = joined.set_index("inference_id")["arr_delay"].sort_index()
            agree &= bool(check.equals(merged.set_index("inference_id")["arr_delay"].sort_index()))
            del joined, merged, check
            spent, report = end_to_end(config, paths, labels_file, turn)
            whole.append(spent)
            print(f"round {turn}: airloop {times['total']:.2f} s, plain {plain_times['total']:.2f} s, "
                  f"end to end {spent['total']:.2f} s", file=sys.stderr, flush=True)  # fmt: skip
        log_mib = sum(f.stat().st_size for f in paths.prediction_log.rglob("*.parquet")) / 2**20

    a, p, e = median(ours), median(plain), median(whole)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"Measured {stamp} on {platform.machine()}, {os.cpu_count()} cores; {args.rows:,} logged "
          f"predictions in {args.files} files ({log_mib:.0f} MiB), {args.rows:,} labels in one Parquet "
          f"file; medians of {args.rounds} rounds, in turns.")  # fmt: skip
    print()
    print("| join | step | seconds | CPU seconds |")
    print("|---|---|---:|---:|")
    for step in ("read_labels", "read_log", "match_predictions"):
        print(f"| airloop, in memory | {step} | {a[step]:.2f} | |")
    print(f"| airloop, in memory | **total** | **{a['total']:.2f}** | {a['cpu']:.2f} |")
    print(f"| plain pandas | read both | {p['read']:.2f} | |")
    print(f"| plain pandas | drop_duplicates + merge | {p['merge']:.2f} | |")
    print(f"| plain pandas | **total** | **{p['total']:.2f}** | {p['cpu']:.2f} |")
    print(
        f"| airloop, `join_labels_file` | end to end (+ partition, DVC) | {e['total']:.2f} | {e['cpu']:.2f} |"
    )
    each = {name: ", ".join(f"{r['total']:.2f}" for r in runs) for name, runs in
            (("ours", ours), ("plain", plain), ("whole", whole))}  # fmt: skip
    print()
    print(f"- each round (s): airloop in memory {each['ours']}; plain pandas {each['plain']}; "
          f"end to end {each['whole']}")  # fmt: skip
    print(f"- airloop in memory / plain pandas: {a['total'] / p['total']:.2f}×")
    print(f"- target (1M labels × 1M predictions in ≤ 5 s, in memory): "
          f"{'met' if a['total'] <= 5 else 'not met'} ({a['total']:.2f} s)")  # fmt: skip
    print(f"- labels file: {made}; airloop counted {counts}; end to end: {report.get('counts')}, "
          f"status {report['status']}")  # fmt: skip
    print(f"- both joins give the same labelled predictions and labels: {'yes' if agree else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
