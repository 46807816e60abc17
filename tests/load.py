"""wrk, the HTTP load generator (Debian's package), driven from tests and benchmarks: POSTs of
JSON bodies taken in turn from a file, one body per line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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


def wrk_command(
    url: str, path: str, body_file: Path, seconds: float, connections: int, workdir: Path
) -> list[str]:
    """The wrk command line posting `body_file`'s lines to url+path for `seconds`."""
    script = workdir / f"{body_file.stem}.lua"
    script.write_text(LUA % {"bodies": body_file, "path": path})
    return [
        "wrk",
        "-t",
        "2",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "-s",
        str(script),
        "--latency",
        url,
    ]


def start_wrk(
    url: str, path: str, body_file: Path, seconds: float, connections: int, workdir: Path
) -> subprocess.Popen[str]:
    """wrk running in the background; `finish_wrk` waits for it and reads its numbers."""
    command = wrk_command(url, path, body_file, seconds, connections, workdir)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_wrk(load: subprocess.Popen[str], timeout: float = 600) -> dict:
    out, err = load.communicate(timeout=timeout)
    if load.returncode != 0:
        raise RuntimeError(f"wrk exited with {load.returncode}: {err}")
    return parse_wrk(out)


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
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        **{f"p{k}": ms(v) for k, v in latency.items()},
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }
