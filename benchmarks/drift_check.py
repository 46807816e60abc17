"""The drift check on 1M rows: airloop's (reference counted once) vs a plain Evidently preset.

    .venv/bin/python benchmarks/drift_check.py [--rows 1000000] [--columns 20]

Both sides get the same seeded frames: a reference and a current window of `--rows` rows
by `--columns` float columns, where every fourth column of the current window is shifted
by a quarter of a standard deviation. Each approach runs in its own process, so its peak
memory (ru_maxrss) is its own:

- plain: `Report([DataDriftPreset()], include_tests=True).run(current, reference)`, as a
  user would write it; per-column verdicts read from its tests.
- airloop: `reference_profile(reference)` (done once when a model is trained; timed on
  its own), then the reference frame is dropped and `compare_to_reference(profile,
  current)` runs: every row counted and tested, plus the kept Evidently report drawn from
  `drift.report_rows` (20,000) rows a side.

Prints Markdown: seconds, peak RSS, the ratio, and whether every column's verdict matches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd


def frames(rows: int, columns: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(columns)]
    reference = pd.DataFrame(rng.normal(0.0, 1.0, (rows, columns)), columns=names)
    current = pd.DataFrame(rng.normal(0.0, 1.0, (rows, columns)), columns=names)
    for name in names[::4]:
        current[name] += 0.25
    return reference, current


def config_for(columns: int):
    from airloop.config import parse_config

    names = [f"f{i}" for i in range(columns)]
    return parse_config(
        {
            "name": "bench",
            "task": "regression",
            "dataset": {
                "columns": {name: {"type": "float"} for name in names},
                "target": {"column": names[-1]},
                "features": names[:-1],
            },
            "model": {"family": "sklearn_linear", "registered_name": "bench"},
            "gate": {"metric": "rmse"},
            "drift": {"share_threshold": 0.5, "min_rows": 100},
        }
    )


def run_plain(rows: int, columns: int) -> dict:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, current = frames(rows, columns)
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    seconds = time.perf_counter() - started
    data = snapshot.dict()
    failed = {t["metric_config"]["metric_id"]: str(t["status"]).endswith("FAIL") for t in data["tests"]}
    verdicts = {
        m["config"]["column"]: failed[m["id"]]
        for m in data["metrics"]
        if str(m["config"]["type"]).endswith(":ValueDrift")
    }
    return {"seconds": seconds, "verdicts": verdicts}


def run_airloop(rows: int, columns: int, workdir: Path) -> dict:
    import evidently.presets  # noqa: F401 - imported before the clock starts, as for the plain run

    from airloop.monitoring.drift import compare_to_reference
    from airloop.monitoring.reference import reference_profile

    config = config_for(columns)
    reference, current = frames(rows, columns)
    started = time.perf_counter()
    profile = reference_profile(reference, config)
    profile_seconds = time.perf_counter() - started
    del reference
    started = time.perf_counter()
    result = compare_to_reference(profile, current, config, workdir, "bench")
    seconds = time.perf_counter() - started
    verdicts = {column: column in result.drifted_columns for column in result.column_scores}
    return {"seconds": seconds, "profile_seconds": profile_seconds, "verdicts": verdicts}


def child(mode: str, rows: int, columns: int, workdir: Path) -> dict:
    outcome = run_plain(rows, columns) if mode == "plain" else run_airloop(rows, columns, workdir)
    outcome["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--child", choices=["plain", "airloop"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.columns, args.workdir)))
        return 0

    results = {}
    with tempfile.TemporaryDirectory(prefix="airloop-drift-") as tmp:
        for mode in ("airloop", "plain"):
            command = [sys.executable, __file__, "--child", mode, "--rows", str(args.rows),
                       "--columns", str(args.columns), "--workdir", tmp]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, plain = results["airloop"], results["plain"]
    same = ours["verdicts"] == plain["verdicts"]
    drifted = sorted(c for c, d in ours["verdicts"].items() if d)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"Measured {stamp} on {platform.machine()}, {os.cpu_count()} cores; "
          f"{args.rows:,} vs {args.rows:,} rows x {args.columns} float columns.")  # fmt: skip
    print()
    print("| check | seconds | peak RSS MB |")
    print("|---|---:|---:|")
    print(f"| plain Evidently DataDriftPreset | {plain['seconds']:.1f} | {plain['peak_mb']:.0f} |")
    print(f"| airloop, reference counted (once, at training) | {ours['profile_seconds']:.1f} | |")
    print(
        f"| airloop check (every row tested, 20k-row report) "
        f"| {ours['seconds']:.1f} | {ours['peak_mb']:.0f} |"
    )
    print()
    print(f"plain / airloop check: {plain['seconds'] / ours['seconds']:.1f}× faster; "
          f"per-column verdicts identical: {same} (drifted: {', '.join(drifted)})")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
