"""What many models cost Airflow while idle: the DAG file's parse time per loop, and the CPU
and memory of the scheduler and dag-processor, for 1, 10 and 50 models (5 DAGs each).

    .venv/bin/python benchmarks/dag_parse_cost.py [--models 1,10,50] [--window 120]
                                                  [--settle-timeout 300] [--keep]

For each count N: N synthetic models, copies of configs/flights.yaml with only `name` and
`model.registered_name` changed, written to a temp folder; a fresh state dir; a fresh
embedded stack (`airloop.ops.stack.Stack`, AIRLOOP_CONFIGS = that folder). Once all 5N DAGs
are listed over the REST API and the stack has settled (no task instance scheduled, queued
or running: each model's `ingest_data` run, `@continuous`, has its landing sensor deferred
to the triggerer, because no file ever lands; that is a real deployment's idle state), a
window of `--window` seconds is measured:

- parse time per loop of dags/airloop_models.py, as the dag-processor records it: the
  `last_parse_duration` Airflow stores per DAG (the REST API's `dags` list shows it; every
  DAG of the file carries the same value) for every parse that finished in the window, and
  the "Last Duration" of the "DAG File Processing Stats" table it logs every 30 s. Both are
  `time.monotonic()` from the parse process's start until the manager collects its result:
  the fork, the import, DagBag, serialisation. Writing the serialised DAGs to the database
  happens afterwards in the manager and is in its CPU below, not in that number;
- the same parse done directly, as a cross-check, in a fresh `python` (run 3 times, the
  median): the Airflow import, then `BundleDagBag` of the file and the serialisation the
  dag-processor does (`airflow.dag_processing.processor._serialize_dags`);
- CPU of the scheduler and the dag-processor (and, for context, the triggerer and
  api-server) as % of one core: utime + stime of the component's process and all its live
  descendants, plus cutime + cstime (what the ones that ended, e.g. each parse process,
  used), from /proc, at the window's start and end;
- their memory, sampled every 5 s: the sum of VmRSS over the process tree (shared pages of
  forked workers counted in each) and the sum of Pss (shared pages split between them).

Polling the REST API every 10 s costs the api-server a little; the other components do not
see it. Prints a Markdown table and writes the numbers to
`<state dir>/benchmarks/dag_parse_cost.json` (`$AIRLOOP_HOME`, default .state/), after
each count. Settling includes each model's first `monitor_drift` run (its latest `@daily`
slot, two short tasks) besides the sensor: 150 task runs at 50 models, at parallelism 3.
With the default window, on 2 cores: ~2.5 min for 1 model, ~3.5 for 10, ~10 for 50 (of
which settling 4-5 min): ~16 minutes for 1, 10 and 50.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from airloop.ops.stack import Stack
from airloop.paths import PROJECT_ROOT, StatePaths

DAG_FILE = PROJECT_ROOT / "dags" / "airloop_models.py"
TEMPLATE = PROJECT_ROOT / "configs" / "flights.yaml"
STAGES_PER_MODEL = 5
MEASURED = ("scheduler", "dag-processor", "triggerer", "api-server")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

DIRECT_PARSE = """
import json, sys, time
started = time.monotonic()
from pathlib import Path
import structlog
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.dag_processing.processor import _serialize_dags
imported = time.monotonic()
dag_file = Path(sys.argv[1])
bag = BundleDagBag(dag_folder=str(dag_file), bundle_path=dag_file.parent, bundle_name="dags-folder",
                   load_op_links=False)
bagged = time.monotonic()
serialized, errors = _serialize_dags(bag, structlog.get_logger())
done = time.monotonic()
print(json.dumps({"import_airflow_s": imported - started, "dagbag_s": bagged - imported,
                  "serialize_s": done - bagged, "total_s": done - started, "dags": len(serialized),
                  "errors": sorted({**bag.import_errors, **errors})}))
"""


# -- synthetic models -------------------------------------------------------------------------
def write_models(folder: Path, count: int) -> list[str]:
    """`count` copies of configs/flights.yaml, each with its own name and registered model."""
    template = TEMPLATE.read_text()
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number in range(count):
        name = f"synthetic_{number:03d}"
        text, named = re.subn(r"(?m)^name: flights$", f"name: {name}", template, count=1)
        text, registered = re.subn(
            r"(?m)^(\s+registered_name:) flights-late-arrival$", rf"\1 {name}-late-arrival", text, count=1
        )
        if not (named and registered):
            raise RuntimeError(f"{TEMPLATE} no longer has the `name`/`registered_name` lines this copies")
        (folder / f"{name}.yaml").write_text(text)
        names.append(name)
    return names


# -- /proc -------------------------------------------------------------------------------------
def _processes() -> dict[int, tuple[int, int]]:
    """{pid: (ppid, utime+stime+cutime+cstime in ticks)} of every readable process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return found


def tree(root: int, processes: dict[int, tuple[int, int]]) -> list[int]:
    """`root` and its live descendants (task and parse processes set their own process groups,
    so the group alone would miss them)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    members, todo = [], [root] if root in processes else []
    while todo:
        pid = todo.pop()
        members.append(pid)
        todo += children.get(pid, [])
    return members


def cpu_ticks(roots: dict[str, int]) -> dict[str, int]:
    processes = _processes()
    return {name: sum(processes[p][1] for p in tree(pid, processes)) for name, pid in roots.items()}


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_kb(roots: dict[str, int]) -> dict[str, dict[str, int]]:
    processes = _processes()
    out = {}
    for name, pid in roots.items():
        members = tree(pid, processes)
        out[name] = {
            "rss_kb": sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in members),
            "pss_kb": sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in members),
            "processes": len(members),
        }
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the stack ---------------------------------------------------------------------------------
def component_pids(paths: StatePaths) -> dict[str, int]:
    folder = paths.airflow_home / "pids"
    return {name: int((folder / f"{name}.pid").read_text()) for name in MEASURED}


def listed_dags(client) -> list[dict]:
    """Every DAG, page by page: the API caps a page at `[api] maximum_page_limit` (100)."""
    dags: list[dict] = []
    while True:
        page = client.request("GET", "dags", params={"limit": 100, "offset": len(dags)})
        dags += page["dags"]
        if not page["dags"] or len(dags) >= page["total_entries"]:
            return dags


def wait_until(predicate, timeout: float, what: str, every: float = 3) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


def task_instances(client, states: list[str]) -> int:
    found = client.request("GET", "dags/~/dagRuns/~/taskInstances", params={"state": states, "limit": 1})
    return int(found["total_entries"])


STATS_ROW = re.compile(
    r"airloop_models\.py\s+(?:\d+\s+)?(?:[\d.]+s\s+)?(\d+)\s+(\d+)\s+([\d.]+)s\s+(\d{4}-\d\d-\d\dT[\d:]+)"
)


def logged_durations(log: Path, offset: int, since: datetime) -> list[float]:
    """'Last Duration' of dags/airloop_models.py for each parse that finished at or after
    `since`, from the stats tables logged after `offset` (each table repeats the last parse)."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    parses = {m.group(4): float(m.group(3)) for m in STATS_ROW.finditer(text)}
    cutoff = f"{since:%Y-%m-%dT%H:%M:%S}"
    return [duration for finished, duration in sorted(parses.items()) if finished >= cutoff]


def measure_count(count: int, root: Path, window: float, settle_timeout: float) -> dict:
    folder = root / f"configs-{count}"
    names = write_models(folder, count)
    paths = StatePaths(root / f"state-{count}")
    stack = Stack(paths, configs=str(folder))
    expected = STAGES_PER_MODEL * count
    result: dict = {"models": count, "dags_expected": expected, "load_at_start": loadavg()}
    started = time.monotonic()
    stack.start()
    try:
        client = stack.client()
        result["stack_start_s"] = time.monotonic() - started

        def all_listed() -> bool:
            dags = [d for d in listed_dags(client) if d["dag_id"].split("__")[0] in names]
            return len(dags) >= expected

        result["dags_listed_s"] = wait_until(all_listed, settle_timeout, f"{expected} DAGs listed")
        # Settled: every ingest run has started and deferred its sensor; nothing else runs.
        result["settle_s"] = wait_until(
            lambda: (
                task_instances(client, ["scheduled", "queued", "running", "up_for_retry"]) == 0
                and task_instances(client, ["deferred"]) >= count
            ),
            settle_timeout,
            "every ingest sensor deferred",
        )
        pids = component_pids(paths)
        log = paths.airflow_home / "logs" / "components" / "dag-processor.log"
        log_offset = log.stat().st_size
        parses: dict[str, float] = {}  # last_parsed_time -> last_parse_duration
        samples: list[dict] = []
        load_samples: list[str] = []
        window_start_utc = datetime.now(UTC)
        t0, cpu0 = time.monotonic(), cpu_ticks(pids)
        next_poll = t0
        while (now := time.monotonic()) - t0 < window:
            samples.append(memory_kb(pids))
            load_samples.append(loadavg())
            if now >= next_poll:
                for dag in listed_dags(client):
                    if dag["last_parsed_time"] and dag["last_parse_duration"] is not None:
                        parsed = datetime.fromisoformat(dag["last_parsed_time"])
                        if parsed >= window_start_utc:
                            parses[dag["last_parsed_time"]] = float(dag["last_parse_duration"])
                next_poll = now + 10
            time.sleep(max(0.0, min(5.0, window - (time.monotonic() - t0))))
        elapsed, cpu1 = time.monotonic() - t0, cpu_ticks(pids)
        deferred = task_instances(client, ["deferred"])
        busy = task_instances(client, ["scheduled", "queued", "running"])
    finally:
        stack.stop()
    # Each DAG's last_parsed_time is written when the file's result is persisted: one parse
    # may stamp DAGs a few ms apart, so group stamps within 2 s into one parse.
    stamps = sorted((datetime.fromisoformat(k), v) for k, v in parses.items())
    api_parses: list[float] = []
    last: datetime | None = None
    for stamp, duration in stamps:
        if last is None or (stamp - last).total_seconds() > 2:
            api_parses.append(duration)
        last = stamp
    result |= {
        "window_s": elapsed,
        "parse_s_api": api_parses,
        "parse_s_log": logged_durations(log, log_offset, window_start_utc),
        "cpu_pct_of_core": {k: 100 * (cpu1[k] - cpu0[k]) / TICKS / elapsed for k in pids},
        "rss_mib_mean": {k: statistics.mean(s[k]["rss_kb"] for s in samples) / 1024 for k in pids},
        "rss_mib_max": {k: max(s[k]["rss_kb"] for s in samples) / 1024 for k in pids},
        "pss_mib_mean": {k: statistics.mean(s[k]["pss_kb"] for s in samples) / 1024 for k in pids},
        "processes_max": {k: max(s[k]["processes"] for s in samples) for k in pids},
        "deferred_at_end": deferred,
        "busy_at_end": busy,
        "load_during_window": load_samples,
        "load_at_end": loadavg(),
        "direct_parse": direct_parse(folder, paths),
    }
    return result


def direct_parse(folder: Path, paths: StatePaths, repeats: int = 3) -> dict:
    env = {
        **os.environ,
        "AIRLOOP_CONFIGS": str(folder),
        "AIRLOOP_HOME": str(paths.home),
        "AIRFLOW_HOME": str(paths.airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", DIRECT_PARSE, str(DAG_FILE)], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"direct parse failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = {
        k: statistics.median(r[k] for r in runs)
        for k in ("import_airflow_s", "dagbag_s", "serialize_s", "total_s")
    }
    return {**median, "dags": runs[0]["dags"], "errors": runs[0]["errors"], "runs": runs}


def _fmt(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{statistics.median(values):.2f} (max {max(values):.2f}, n={len(values)})"


def report(results: list[dict]) -> str:
    lines = [
        f"## DAG parse and idle cost by model count ({datetime.now(UTC):%Y-%m-%d}, "
        f"{os.cpu_count()} cores, {platform.machine()})\n",
        "| models | DAGs | parse per loop, dag-processor (s): median (max, n) | same, its stats log (s) | "
        "direct parse: DagBag + serialise (s) | direct, fresh process incl. Airflow import (s) | "
        "scheduler CPU % | dag-processor CPU % | sched + dag-proc CPU % | triggerer CPU % | "
        "scheduler RSS / PSS (MiB) | dag-processor RSS / PSS (MiB) | load avg (1 min) in window |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        cpu, rss, pss, d = r["cpu_pct_of_core"], r["rss_mib_mean"], r["pss_mib_mean"], r["direct_parse"]
        loads = [float(s.split()[0]) for s in r["load_during_window"]]
        lines.append(
            f"| {r['models']} | {d['dags']} | {_fmt(r['parse_s_api'])} | {_fmt(r['parse_s_log'])} | "
            f"{d['dagbag_s'] + d['serialize_s']:.2f} | {d['total_s']:.2f} | "
            f"{cpu['scheduler']:.1f} | {cpu['dag-processor']:.1f} | "
            f"{cpu['scheduler'] + cpu['dag-processor']:.1f} | {cpu['triggerer']:.1f} | "
            f"{rss['scheduler']:.0f} / {pss['scheduler']:.0f} | "
            f"{rss['dag-processor']:.0f} / {pss['dag-processor']:.0f} | "
            f"{min(loads):.2f}-{max(loads):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="1,10,50", help="comma-separated model counts")
    parser.add_argument("--window", type=float, default=120, help="seconds measured per count")
    parser.add_argument("--settle-timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (configs, state, logs)")
    args = parser.parse_args()
    counts = [int(c) for c in args.models.split(",")]
    root = Path(tempfile.mkdtemp(prefix="airloop-parse-cost-"))
    results: list[dict] = []
    out = StatePaths.from_env().home / "benchmarks" / "dag_parse_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for count in counts:
            results.append(measure_count(count, root, args.window, args.settle_timeout))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            # After each count, so a later one that fails loses none before it.
            record = {"date": f"{datetime.now(UTC):%Y-%m-%d}", "results": results}
            out.write_text(json.dumps(record, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(report(results))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
