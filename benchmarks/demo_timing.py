"""The demo's wall time through Airflow vs the same stages in one plain Python process.

    .venv/bin/python benchmarks/demo_timing.py [--months 1-12]

Each side starts from an empty state dir (install time excluded). The Airflow side is
`make demo` (real scheduler, the embedded default: flights and weather side by side); the
plain side calls every stage in order in one process (airloop.demo.plain), one model after
the other, as a hand-rolled script would. Prints a Markdown report: totals, their ratio,
seconds per model and month and per Airflow task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from airloop.cli import month_numbers
from airloop.paths import PROJECT_ROOT

PLAIN = """
import json, sys
from airloop.demo.plain import replay_in_process
from airloop.deployment import load_deployment
from airloop.paths import StatePaths
models = load_deployment().models.values()
months = json.loads(sys.argv[1])
print(json.dumps({c.name: replay_in_process(c, StatePaths.from_env(c.name), months) for c in models}))
"""


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRLOOP_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "GX_ANALYTICS_ENABLED": "False",
    }


def run_airflow(home: Path, months: str) -> tuple[float, dict]:
    started = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).parent / "airloop"), "demo", "run", "--months", months],
        env=_env(home),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.monotonic() - started
    return wall, json.loads((home / "reports" / "demo_timing.json").read_text())


def _total(per_model: dict[str, dict[str, float]]) -> float:
    return sum(seconds for months in per_model.values() for seconds in months.values())


def run_plain(home: Path, months: list[int]) -> tuple[float, dict]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PLAIN, json.dumps(months)],
        env=_env(home),
        check=True,
        capture_output=True,
        text=True,
    )
    return time.monotonic() - started, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--months", default="1-12")
    args = parser.parse_args()
    months = month_numbers(args.months)
    with tempfile.TemporaryDirectory(prefix="airloop-bench-") as tmp:
        airflow_wall, airflow = run_airflow(Path(tmp) / "airflow", args.months)
        plain_wall, plain = run_plain(Path(tmp) / "plain", months)
    print(
        f"## Demo wall time, {len(months)} months ({datetime.now(UTC):%Y-%m-%d}, "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()})\n"
    )
    print("| | wall (s) | loop only (s) |\n|---|---|---|")
    print(f"| Airflow (start stack, replay, stop) | {airflow_wall:.0f} | {airflow['total_s']:.0f} |")
    print(f"| plain Python, one process, a model at a time | {plain_wall:.0f} | {_total(plain):.0f} |")
    print(f"\nratio Airflow loop / plain: {airflow['total_s'] / _total(plain):.2f}x\n")
    print("Airflow lands both models' month together; a month settles when both have.\n")
    print("| model | month | Airflow: settled after (s) | plain (s) |\n|---|---|---|---|")
    for model, months_of in airflow["models"].items():
        for month, seconds in months_of.items():
            print(f"| {model} | {month} | {seconds} | {plain.get(model, {}).get(month, '-')} |")
    print("\n| task | runs | mean (s) | total (s) |\n|---|---|---|---|")
    for task, stats in airflow["tasks"].items():
        print(f"| {task} | {stats['runs']} | {stats['mean_s']:.1f} | {stats['total_s']:.0f} |")
    print(f"\n(project: {PROJECT_ROOT})")


if __name__ == "__main__":
    main()
