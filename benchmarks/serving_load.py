"""Serving load: the champion's bento (/predict with one record, /predict_one) vs `mlflow
models serve` on the same model, a multiclass bento vs the binary one, and the binary bento
with its prediction log off vs on, side by side.

    .venv/bin/python benchmarks/serving_load.py [--seconds 20] [--connections 32] [--rounds 1]
                                                [--only all|routes|log]

Needs wrk (Debian: `apt-get install -y wrk`); it stops at once, saying so, without it. In a
fresh state dir it trains two models the way the pipeline does (January–March 2013,
configs/flights.yaml, the default xgboost family): the config's binary one (arrives more
than 15 minutes late) and a multiclass one on the same table shape (the same rows and
features; the label is the arrival delay's band: early, on_time, late, very_late). It
registers both (with their digests) and builds their bentos. Then, one server at a time
on 127.0.0.1 and a free port, wrk sends single-record POSTs from `--connections`
connections for `--seconds` seconds (after a 5-second warm-up), `--rounds` times per route,
the routes of one server taking turns: the binary bento's /predict with
{"records": [record]} and /predict_one with {"record": record}, MLflow's /invocations with
{"dataframe_records": [record]}, and the multiclass bento's two routes.
Records cycle through 200 real December rows. Prints Markdown: requests/s, latency
percentiles, the server's CPU time per request (its processes' user + system time over the
run, from /proc: steadier than requests/s on a machine shared with other work), errors,
and the ratios.

The prediction log (`--only log` runs just this, training only the binary model): the binary
bento served twice at once, one server without a log and one writing its log to a folder
in the temp dir (`start_bento_server(..., prediction_log=...)`), wrk on /predict with one
record, `--rounds` runs a side taking turns (off, on; on, off; ...). Printed: each side's
medians, every round's pair, the ratios against the target (≤ 10% fewer requests/s, p99 at
most 5 ms higher), and, after the log-on server is stopped (which flushes its log), the
log's rows read back with pyarrow against the requests that server answered (its /metrics).

Safe rollout (`--only rollout`): two versions of the binary model, `airloop serve` (HAProxy
in front, the prediction log on, Prometheus beside) in a thread of this process. wrk on
/predict_one, each record with its own inference id, `--rounds` runs of each path in turns:
straight to the champion's own server (direct), through HAProxy (the path every switch
takes), a 5% and a 50% canary, and a 100% and a 10% shadow. Then 10 moves of `champion` (a
promotion, then rollbacks back and forth) 4 s apart during one 48-second wrk run through
HAProxy: its non-2xx responses and socket errors are the requests lost to switching. CPU
per request here is the whole serving stack's (and wrk's): every process under this one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from airloop.config import AirloopConfig, load_config, parse_config
from airloop.ops.stack import free_port
from airloop.packaging.serving import scraped_total, start_bento_server, stop_server, wait_ready
from airloop.paths import PROJECT_ROOT, StatePaths

sys.path.insert(0, str(PROJECT_ROOT))
from tests.load import parse_wrk, wrk_command  # noqa: E402

# The multiclass label: the arrival delay's band, in minutes (upper bounds, inclusive).
BAND = "arr_delay_band"
BANDS = (("early", -10.0), ("on_time", 15.0), ("late", 60.0), ("very_late", float("inf")))


def multiclass_config(config: AirloopConfig) -> AirloopConfig:
    """configs/flights.yaml, its label the delay band: same rows, same features."""
    data = config.model_dump(mode="json")
    data["task"] = "multiclass_classification"
    data["dataset"]["columns"][BAND] = {"type": "str", "nullable": True}
    data["dataset"]["target"] = {"column": BAND, "classes": [name for name, _ in BANDS]}
    data["model"]["registered_name"] = "flights-delay-band"
    data["gate"] = {**data["gate"], "metric": "log_loss"}
    return parse_config(data, "the multiclass benchmark config")


def with_band(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the multiclass label (null where the arrival delay is)."""
    bounds = [float("-inf"), *(upper for _, upper in BANDS)]
    band = pd.cut(table["arr_delay"], bounds, labels=[name for name, _ in BANDS]).astype(object)
    return table.assign(**{BAND: band.where(table["arr_delay"].notna(), None)})


def trained(config: AirloopConfig, paths: StatePaths, train: Path, evaluation: Path) -> tuple[str, str]:
    """Train, register and package one model; return (model_uri, bento tag)."""
    from airloop.packaging.bento import build_bento
    from airloop.registry.tracking import tracking_client
    from airloop.registry.versions import register_candidate
    from airloop.training.train import TrainRequest, train_candidate

    result = train_candidate(
        TrainRequest(config.model_dump(mode="json"), str(train), str(evaluation), {}), paths
    )
    client = tracking_client(paths)
    version = register_candidate(
        client, config.model.registered_name, result.run_id, result.model_uri, {}, paths.tracking_uri()
    ).version
    uri = f"models:/{config.model.registered_name}/{version}"
    return uri, build_bento(config, uri, version, paths)


def bodies(config: Any, december: pd.DataFrame, path: Path, allowed: dict, wrap: Any) -> Path:
    rows = december[list(config.dataset.features)]
    for name, values in allowed.items():  # rows the bento accepts (allowed values only)
        rows = rows[rows[name].isna() | rows[name].isin(values)]
    records = json.loads(rows.head(200).to_json(orient="records"))
    path.write_text("\n".join(json.dumps(wrap(r)) for r in records) + "\n")
    return path


def wrk(
    url: str,
    path: str,
    body_file: Path,
    seconds: int,
    connections: int,
    workdir: Path,
    server: int,
    warm_up: bool = True,
) -> dict:
    """wrk's numbers, and the CPU the server's processes (`server` and its descendants) spent
    per answered request: on a machine shared with other work, the steadier of the two."""
    warm_requests = 0
    if warm_up:
        warm_up_command = wrk_command(url, path, body_file, 5, connections, workdir)
        warm = subprocess.run(warm_up_command, capture_output=True, text=True, check=True)
        warm_requests = parse_wrk(warm.stdout)["requests"]
    before = tree_cpu_seconds(server)
    command = wrk_command(url, path, body_file, seconds, connections, workdir)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    spent = tree_cpu_seconds(server) - before
    result = parse_wrk(done.stdout)
    return {**result, "cpu_ms": 1000 * spent / max(result["requests"], 1), "warm_up_requests": warm_requests}


def median_run(runs: list[dict]) -> dict:
    """Per number, the median over runs; errors are summed."""
    import statistics

    numeric = [k for k in runs[0] if k not in ("socket_errors", "non_2xx")]
    socket_errors = "; ".join(sorted({r["socket_errors"] for r in runs} - {"none"})) or "none"
    return {
        **{k: statistics.median(r[k] for r in runs) for k in numeric},
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": socket_errors,
        "runs": len(runs),
    }


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process `root` and its live descendants (Linux /proc)."""
    parents, ticks = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)], ticks[int(entry.name)] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, grown = {root}, True
    while grown:
        grown = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grown = True
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def mlflow_server(uri: str, paths: StatePaths, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    # mlflow starts `uvicorn` by name: this environment's bin must come first on PATH.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": paths.tracking_uri(), "PATH": path}
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", uri, "--env-manager",
               "local", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2):
                return server, base
        except Exception:  # noqa: BLE001 - not up yet
            if server.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:]) from None
            time.sleep(0.5)
    raise RuntimeError("mlflow models serve did not start:\n" + log.read_text()[-3000:])


def stop(server: subprocess.Popen[bytes]) -> None:
    import signal

    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


ROUTES = {  # what a route is sent: one record each
    "/predict": lambda r: {"records": [r]},
    "/predict_one": lambda r: {"record": r},
    "/invocations": lambda r: {"dataframe_records": [r]},
}


def measure_bento(
    config: AirloopConfig, bento: str, paths: StatePaths, december: pd.DataFrame, args: Any, workdir: Path
) -> dict[str, dict]:
    import bentoml

    allowed = dict(bentoml.bentos.get(bento).info.args.get("allowed", {}))
    label = bento.partition(":")[0]
    with (workdir / f"{label}.log").open("wb") as log:
        server, base = start_bento_server(bento, paths, "127.0.0.1", free_port(), log, cwd=workdir)
        try:
            wait_ready(base, server, 90, workdir / f"{label}.log")
            files = {
                route: bodies(
                    config, december, workdir / f"{label}{route.replace('/', '-')}.jsonl", allowed, wrap
                )
                for route, wrap in ROUTES.items()
                if route != "/invocations"
            }
            # The routes take turns, so a slower minute of a shared machine falls on both.
            runs: dict[str, list[dict]] = {route: [] for route in files}
            for turn in range(args.rounds):
                for route, body in files.items():
                    runs[route].append(
                        wrk(base, route, body, args.seconds, args.connections, workdir, server.pid, turn == 0)
                    )
            return {route: median_run(done) for route, done in runs.items()}
        finally:
            stop_server(server)


def measure_log(
    config: AirloopConfig, bento: str, paths: StatePaths, december: pd.DataFrame, args: Any, workdir: Path
) -> dict[str, Any]:
    """The same bento served twice at once, its prediction log off and on (to a folder in
    `workdir`), /predict with one record; the two take turns (off, on; then on, off: a slower
    minute of a shared machine falls on both). Then the log-on server's own counts (its
    /metrics), stopped (which flushes its log), and the log's rows read back."""
    import bentoml
    import pyarrow.dataset as ds

    allowed = dict(bentoml.bentos.get(bento).info.args.get("allowed", {}))
    folder = workdir / "prediction-log"
    body = bodies(config, december, workdir / "log-predict.jsonl", allowed, ROUTES["/predict"])
    # Each server gets its own copy of the BentoML store: BentoML keeps the Prometheus
    # multiprocess files of /metrics under BENTOML_HOME, and a second server there would
    # clear the first one's and count both servers' requests as its own.
    homes = {"off": paths, "on": StatePaths(workdir / "state-log-on")}
    shutil.copytree(paths.bentoml_home, homes["on"].bentoml_home, symlinks=True)
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for side in ("off", "on"):
            with (workdir / f"log-{side}.log").open("wb") as output:
                servers[side] = start_bento_server(
                    bento, homes[side], "127.0.0.1", free_port(), output, cwd=workdir,
                    prediction_log=folder if side == "on" else None,
                )  # fmt: skip
        for side, (server, base) in servers.items():
            wait_ready(base, server, 90, workdir / f"log-{side}.log")
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        for turn in range(args.rounds):
            for side in ("off", "on") if turn % 2 == 0 else ("on", "off"):
                server, base = servers[side]
                runs[side].append(
                    wrk(
                        base, "/predict", body, args.seconds, args.connections, workdir, server.pid, turn == 0
                    )
                )
        text = _metrics(servers["on"][1])
        counted = {
            name: scraped_total(text, f"airloop_{name}_total")
            for name in ("predictions", "prediction_log_written", "prediction_log_dropped",
                         "prediction_log_errors")
        }  # fmt: skip
        counted["requests_200"] = scraped_total(text, "airloop_requests_total", route="predict", code="200")
    finally:
        for server, _ in servers.values():
            stop_server(server)
    logged = ds.dataset(folder, format="parquet").to_table(columns=["inference_id"]).column(0)
    return {
        "off": median_run(runs["off"]),
        "on": median_run(runs["on"]),
        "rounds": runs,
        "counted": counted,
        "wrk_answered": sum(r["requests"] + r["warm_up_requests"] for r in runs["on"]),
        "log_rows": len(logged),
        "log_ids": len(set(logged.to_pylist())),
        "log_files": sum(1 for _ in folder.rglob("*.parquet")),
    }


ROLLOUT_STATES = ("direct", "haproxy", "canary 5%", "canary 50%", "shadow 100%", "shadow 10%")


def measure_rollout(
    config: AirloopConfig,
    paths: StatePaths,
    december: pd.DataFrame,
    args: Any,
    workdir: Path,
    versions: list[str],
) -> dict[str, Any]:
    """`airloop serve` (HAProxy in front, prediction log on) with two registered versions:
    wrk on /predict_one straight to the champion's server and through HAProxy, then through a
    50% canary, a 100% and a 10% shadow, in turns per round; then 10 switches of champion
    (promotions and rollbacks, alternately) during one long wrk run."""
    import threading

    import bentoml

    from airloop.packaging.bento import bento_tag
    from airloop.packaging.champion_server import live_routes, serve_champions
    from airloop.registry.rollout import end_canary, end_shadow, set_canary, set_shadow
    from airloop.registry.tracking import tracking_client
    from airloop.registry.versions import CHAMPION

    first, second = versions
    client, name = tracking_client(paths), config.model.registered_name
    client.set_registered_model_alias(name, CHAMPION, first)
    tag = bento_tag(config, first)
    allowed = dict(bentoml.bentos.get(tag).info.args.get("allowed", {}))
    body = bodies(
        config,
        december,
        workdir / "rollout.jsonl",
        allowed,
        lambda r: {"record": {**r, "inference_id": uuid.uuid4().hex}},
    )
    port, stop = free_port(), threading.Event()
    thread = threading.Thread(
        target=serve_champions,
        args=([config], paths, "127.0.0.1", port, 0.5),
        kwargs={"should_stop": stop.is_set},
    )
    thread.start()
    frontend = f"http://127.0.0.1:{port}"

    def servers() -> list[dict[str, Any]]:
        return (live_routes(paths) or {}).get(config.name, {}).get("servers", [])

    def settle(check: Any) -> None:
        deadline = time.monotonic() + 300
        while not check(servers()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"airloop serve did not settle: {servers()}")
            time.sleep(0.5)

    def champion_server() -> dict[str, Any]:
        return next(s for s in servers() if s["version"] == first and s["weight"] == 100)

    def apply(state: str) -> str:
        end_canary(client, name)
        end_shadow(client, name)
        if state.startswith("canary"):
            percent = int(state.split()[1].rstrip("%"))
            set_canary(client, name, second, percent)
            settle(lambda now: sorted(s["weight"] or 0 for s in now)[-2:] == sorted([percent, 100 - percent]))
        elif state.startswith("shadow"):
            sample = 1.0 if state == "shadow 100%" else 0.1
            set_shadow(client, name, second, sample)
            settle(lambda now: any(s["weight"] == 100 and s["mirror_sample"] == sample for s in now)
                   and len(now) == 3)  # fmt: skip
        else:
            settle(lambda now: any(s["weight"] == 100 and not s["mirror_to"] for s in now) and len(now) == 2)
        return f"http://127.0.0.1:{champion_server()['port']}" if state == "direct" else frontend

    try:
        settle(lambda now: len(now) == 2)
        print(f"serving {tag} behind HAProxy at {frontend}", file=sys.stderr)
        runs: dict[str, list[dict]] = {state: [] for state in ROLLOUT_STATES}
        for turn in range(args.rounds):
            for state in ROLLOUT_STATES if turn % 2 == 0 else ROLLOUT_STATES[::-1]:
                url = apply(state)
                runs[state].append(
                    wrk(
                        url,
                        "/predict_one",
                        body,
                        args.seconds,
                        args.connections,
                        workdir,
                        os.getpid(),
                        turn == 0,
                    )
                )
        apply("haproxy")
        switches = _switches(client, name, first, second, frontend, body, args, workdir, paths, config)
    finally:
        stop.set()
        thread.join(timeout=120)
    return {"runs": {state: median_run(r) for state, r in runs.items()}, "switches": switches}


def _switches(client, name, first, second, frontend, body, args, workdir, paths, config) -> dict[str, Any]:
    """10 moves of `champion` (promotion, rollback, ...) 4 s apart during one wrk run."""
    from airloop.packaging.champion_server import wait_until_warm
    from airloop.registry.versions import promote_champion, roll_back_champion
    from tests.load import finish_wrk, start_wrk

    load = start_wrk(frontend, "/predict_one", body, 48, args.connections, workdir)
    time.sleep(3)
    champion = first
    for move in range(10):
        target = second if champion == first else first
        wait_until_warm(paths, config.name, target, 60)
        if move == 0:
            promote_champion(client, name, second, first)
        else:
            roll_back_champion(client, name)
        champion = target
        time.sleep(4)
    return finish_wrk(load)


def _metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        return str(response.read().decode())


def print_rollout(result: dict[str, Any], args: Any) -> None:
    runs, switched = result["runs"], result["switches"]
    print(f"Safe rollout paths: `airloop serve` (HAProxy in front, prediction log on), /predict_one with "
          f"one record and its inference id, wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} "
          f"round(s) of every path in turns; medians. CPU: the whole serving stack's and wrk's.")  # fmt: skip
    print()
    print(
        "| path | req/s | p50 ms | p90 ms | p99 ms | vs direct req/s | CPU ms/req | non-2xx | socket errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    direct = runs["direct"]
    for state, r in runs.items():
        print(f"| {state} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} "
              f"| {r['rps'] / direct['rps']:.3f}× | {r['cpu_ms']:.3f} | {r['non_2xx']} "
              f"| {r['socket_errors']} |")  # fmt: skip
    print()
    print(f"- 10 switches of champion (a promotion, then rollbacks) 4 s apart under one 48 s wrk run "
          f"through HAProxy: {switched['requests']:,} requests, {switched['non_2xx']} non-2xx, socket "
          f"errors: {switched['socket_errors']}; {switched['rps']:.0f} req/s, "
          f"p99 {switched['p99']:.1f} ms.")  # fmt: skip
    for state in ("haproxy", "canary 5%", "canary 50%"):
        r = runs[state]
        print(f"- {state} vs direct: {r['rps'] / direct['rps']:.3f}× req/s (target ≥ 0.85), p99 "
              f"{r['p99'] - direct['p99']:+.1f} ms")  # fmt: skip
    haproxy = runs["haproxy"]
    for state, target in (("shadow 100%", 0.60), ("shadow 10%", 0.90)):
        r = runs[state]
        print(f"- {state} vs HAProxy alone: {r['rps'] / haproxy['rps']:.3f}× req/s (target ≥ {target:.2f}), "
              f"p99 {r['p99'] - haproxy['p99']:+.1f} ms")  # fmt: skip


def print_log(result: dict[str, Any], args: Any) -> None:
    off, on = result["off"], result["on"]
    print(f"Prediction log off vs on: the binary bento served twice at once, /predict with one record, "
          f"wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} round(s) each side in turns "
          f"(off, on; on, off; ...); medians. Log: sample_rate 1, Parquet to a local folder.")  # fmt: skip
    print()
    print("| prediction log | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/req | non-2xx "
          "| socket errors |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for side, r in (("off", off), ("on", on)):
        print(f"| {side} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} "
              f"| {r['cpu_ms']:.3f} | {r['non_2xx']} | {r['socket_errors']} |")  # fmt: skip
    print()
    print("| round | off req/s | on req/s | on / off | off p99 ms | on p99 ms | on − off p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for turn, (a, b) in enumerate(zip(result["rounds"]["off"], result["rounds"]["on"], strict=True)):
        print(f"| {turn + 1} | {a['rps']:.0f} | {b['rps']:.0f} | {b['rps'] / a['rps']:.3f} | {a['p99']:.1f} "
              f"| {b['p99']:.1f} | {b['p99'] - a['p99']:+.1f} |")  # fmt: skip
    import statistics

    ratio, extra = on["rps"] / off["rps"], on["p99"] - off["p99"]
    pairs = list(zip(result["rounds"]["off"], result["rounds"]["on"], strict=True))
    pair_ratio = statistics.median(b["rps"] / a["rps"] for a, b in pairs)
    pair_extra = statistics.median(b["p99"] - a["p99"] for a, b in pairs)
    print()
    print(f"- log on / off: {ratio:.3f}× requests per second ({100 * (1 - ratio):.1f}% fewer), p99 "
          f"{extra:+.1f} ms, {on['cpu_ms'] / off['cpu_ms']:.3f}× server CPU per request (medians of each "
          f"side); median of the rounds' pairs: {pair_ratio:.3f}×, p99 {pair_extra:+.1f} ms")  # fmt: skip
    print(f"- target ≤ 10% fewer req/s: {'met' if ratio >= 0.9 else 'not met'}; p99 at most 5 ms higher: "
          f"{'met' if extra <= 5 else 'not met'}")  # fmt: skip
    counted = result["counted"]
    equal = result["log_rows"] == counted["predictions"] == counted["requests_200"]
    print(f"- log rows after the log-on rounds: {result['log_rows']:,} ({result['log_ids']:,} distinct "
          f"inference ids, {result['log_files']} files); the server answered {counted['requests_200']:,.0f} "
          f"/predict requests with 200 and counted {counted['predictions']:,.0f} predictions, "
          f"{counted['prediction_log_written']:,.0f} written by then (the rest at its shutdown's flush), "
          f"{counted['prediction_log_dropped']:,.0f} dropped, {counted['prediction_log_errors']:,.0f} "
          f"write errors; wrk counted "
          f"{result['wrk_answered']:,} responses (warm-up included; a request still in flight when a "
          f"wrk run ends is answered, not counted by wrk). Log rows = answered: "
          f"{'yes' if equal else 'NO'}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs per route, taking turns; the medians are printed"
    )
    parser.add_argument(
        "--only", choices=("all", "routes", "log", "rollout"), default="all",
        help="routes: the bentos' routes vs mlflow, multiclass vs binary; log: prediction log off vs on; "
        "rollout: straight to the champion's server vs through HAProxy, a canary and shadows, and 10 "
        "switches under load",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("serving_load.py needs wrk, the HTTP load generator, on PATH: "
              "`apt-get install -y wrk` (Debian package wrk).", file=sys.stderr)  # fmt: skip
        return 2
    from airloop.demo.flights import flights

    rows: list[tuple[str, str, str, dict]] = []  # (server, model, route, result)
    logged: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="airloop-serving-") as tmp:
        workdir = Path(tmp)
        paths = StatePaths(workdir / "state")
        paths.home.mkdir(parents=True, exist_ok=True)
        os.environ["AIRLOOP_HOME"] = str(paths.home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        binary, multiclass = load_config(), multiclass_config(load_config())
        table = with_band(flights())
        train, evaluation = paths.home / "train.parquet", paths.home / "eval.parquet"
        table[table["month"] <= 3].to_parquet(train, index=False)
        december = table[(table["month"] == 12) & table["arr_delay"].notna()]
        december.to_parquet(evaluation, index=False)
        models: tuple[tuple[str, AirloopConfig], ...] = (("binary", binary), ("multiclass", multiclass))
        if args.only in ("log", "rollout"):
            models = models[:1]
        built = {name: trained(c, paths, train, evaluation) for name, c in models}
        tags = {name: bento for name, (_, bento) in built.items()}
        if args.only in ("all", "rollout"):
            again = trained(binary, paths, train, evaluation)
            versions = [built["binary"][0].rpartition("/")[2], again[0].rpartition("/")[2]]
            rolled = measure_rollout(binary, paths, december, args, workdir, versions)

        if args.only in ("all", "log"):
            logged = measure_log(binary, tags["binary"], paths, december, args, workdir)
        for name, config in models if args.only in ("all", "routes") else ():
            for route, result in measure_bento(config, tags[name], paths, december, args, workdir).items():
                rows.append(("BentoML bento (airloop)", name, route, result))
            if name == "binary":
                server, base = mlflow_server(built[name][0], paths, workdir / "mlflow.log")
                try:
                    body = bodies(config, december, workdir / "mlflow.jsonl", {}, ROUTES["/invocations"])
                    result = median_run(
                        [
                            wrk(
                                base,
                                "/invocations",
                                body,
                                args.seconds,
                                args.connections,
                                workdir,
                                server.pid,
                                t == 0,
                            )
                            for t in range(args.rounds)
                        ]
                    )
                finally:
                    stop(server)
                rows.append(("mlflow models serve", name, "/invocations", result))

    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    if args.only in ("all", "rollout"):
        print(f"Measured {stamp} on {platform.machine()}, {os.cpu_count()} cores; {tags['binary']}.")
        print()
        print_rollout(rolled, args)
        print()
    if logged is not None:
        print(f"Measured {stamp} on {platform.machine()}, {os.cpu_count()} cores; {tags['binary']}.")
        print()
        print_log(logged, args)
        print()
    if not rows:
        return 0
    print(f"Measured {stamp} on {platform.machine()}, {os.cpu_count()} cores; {tags['binary']} and "
          f"{tags['multiclass']} ({len(BANDS)} classes); wrk -t2 -c{args.connections} -d{args.seconds}s, "
          f"single-record POSTs; medians of {args.rounds} run(s) per route, in turns.")  # fmt: skip
    print()
    print("| server | model | route | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/req | non-2xx "
          "| socket errors |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for kind, model, route, r in rows:
        print(f"| {kind} | {model} | {route} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p90']:.1f} "
              f"| {r['p99']:.1f} | {r['cpu_ms']:.2f} | {r['non_2xx']} | {r['socket_errors']} |")  # fmt: skip
    got = {(model, route): r for _, model, route, r in rows}

    def ratio(a: tuple[str, str], b: tuple[str, str]) -> str:
        rps, cpu = got[a]["rps"] / got[b]["rps"], got[a]["cpu_ms"] / got[b]["cpu_ms"]
        return f"{rps:.2f}× requests per second, {cpu:.2f}× server CPU per request"

    print()
    for model in ("binary", "multiclass"):
        one, batch = (model, "/predict_one"), (model, "/predict")
        print(f"- {model}: /predict_one vs /predict (one record): {ratio(one, batch)}")
    bento, mlflow = ("binary", "/predict"), ("binary", "/invocations")
    print(f"- binary bento /predict vs mlflow models serve: {ratio(bento, mlflow)}")
    for route in ("/predict", "/predict_one"):
        print(f"- multiclass vs binary, {route}: {ratio(('multiclass', route), ('binary', route))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
