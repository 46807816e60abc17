"""Serving load: the champion's bento vs `mlflow models serve` on the same model, side by side.

    .venv/bin/python benchmarks/serving_load.py [--seconds 20] [--connections 32]

Needs wrk (`apt-get install wrk`). In a fresh state dir it trains one model the way the
pipeline does (January–March 2013, configs/flights.yaml), registers it (with its digest)
and builds its bento. Then, one server at a time on 127.0.0.1 and a free port, wrk sends
single-record POSTs from `--connections` connections for `--seconds` seconds (after a
5-second warm-up): the bento's /predict with {"records": [record]}, MLflow's /invocations
with {"dataframe_records": [record]}. Records cycle through 200 real December rows.
Prints Markdown: requests/s, latency percentiles, errors, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from airloop.config import load_config
from airloop.packaging.serving import served_bento
from airloop.paths import StatePaths
from airloop.stack import free_port

LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
"""


def champion(paths: StatePaths) -> tuple[Any, str, str, pd.DataFrame]:
    """Train, register and package one model; return (config, model_uri, bento tag, december rows)."""
    from airloop.demo.flights import flights
    from airloop.packaging.bento import build_bento
    from airloop.registry import register_candidate
    from airloop.tracking import tracking_client
    from airloop.training.train import TrainRequest, train_candidate

    config = load_config()
    table = flights()
    train, evaluation = paths.home / "train.parquet", paths.home / "eval.parquet"
    paths.home.mkdir(parents=True, exist_ok=True)
    table[table["month"] <= 3].to_parquet(train, index=False)
    december = table[(table["month"] == 12) & table["arr_delay"].notna()]
    december.to_parquet(evaluation, index=False)
    result = train_candidate(
        TrainRequest(config.model_dump(mode="json"), str(train), str(evaluation), {}), paths
    )
    client = tracking_client(paths)
    version = register_candidate(
        client, config.model.registered_name, result.run_id, result.model_uri, {}, paths.tracking_uri()
    ).version
    uri = f"models:/{config.model.registered_name}/{version}"
    return config, uri, build_bento(config, uri, version, paths), december


def bodies(config: Any, december: pd.DataFrame, wrap: str, path: Path, categories: dict) -> Path:
    rows = december[list(config.dataset.features)]
    for name, values in categories.items():  # rows the bento accepts (known categories)
        rows = rows[rows[name].isna() | rows[name].isin(values)]
    records = json.loads(rows.head(200).to_json(orient="records"))
    path.write_text("\n".join(json.dumps({wrap: [r]}) for r in records) + "\n")
    return path


def wrk(url: str, path: str, body_file: Path, seconds: int, connections: int, workdir: Path) -> dict:
    script = workdir / f"{path.strip('/')}.lua"
    script.write_text(LUA % {"bodies": body_file, "path": path})
    base = ["wrk", "-t", "2", "-c", str(connections), "-s", str(script), "--latency", url]
    subprocess.run([*base[:5], "-d", "5s", *base[5:]], capture_output=True, check=True)  # warm-up
    done = subprocess.run(
        [*base[:5], "-d", f"{seconds}s", *base[5:]], capture_output=True, text=True, check=True
    )
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> dict:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if set(latency) != {"50", "75", "90", "99"}:
        raise RuntimeError(f"wrk printed no latency distribution:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        **{f"p{k}": ms(v) for k, v in latency.items()},
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airloop-serving-") as tmp:
        workdir = Path(tmp)
        paths = StatePaths(workdir / "state")
        os.environ["AIRLOOP_HOME"] = str(paths.home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        config, uri, bento, december = champion(paths)
        import bentoml

        categories = dict(bentoml.bentos.get(bento).info.args.get("categories", {}))
        results = {}
        with served_bento(bento, paths, workdir / "bento.log") as base:
            body = bodies(config, december, "records", workdir / "bento.jsonl", categories)
            results["BentoML bento (airloop)"] = wrk(
                base, "/predict", body, args.seconds, args.connections, workdir
            )
        server, base = mlflow_server(uri, paths, workdir / "mlflow.log")
        try:
            body = bodies(config, december, "dataframe_records", workdir / "mlflow.jsonl", categories)
            results["mlflow models serve"] = wrk(
                base, "/invocations", body, args.seconds, args.connections, workdir
            )
        finally:
            stop(server)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"Measured {stamp} on {platform.machine()}, {os.cpu_count()} cores; {bento}; "
          f"wrk -t2 -c{args.connections} -d{args.seconds}s, single-record POSTs.")  # fmt: skip
    print()
    print("| server | req/s | p50 ms | p90 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} "
              f"| {r['non_2xx']} | {r['socket_errors']} |")  # fmt: skip
    ours, theirs = results["BentoML bento (airloop)"]["rps"], results["mlflow models serve"]["rps"]
    print()
    print(f"bento / mlflow models serve: {ours / theirs:.2f}× requests per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
