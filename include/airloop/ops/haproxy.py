"""HAProxy in front of the models' servers: what lets traffic move between them with no
request refused.

Each model has one frontend on its own port (the address callers use) and one backend of
`SLOTS` server slots. A slot is pointed at a running bento server and given a weight over
HAProxy's runtime API (a Unix socket), with no reload: a switch of champion is a change of
weights, a canary step another, and connections from callers never notice. A server leaving
is drained (no new requests, the ones in flight finish) before it is stopped.

Requests are routed by a consistent hash of a request key, so one caller stays with one
model while weights allow it: the `X-Airloop-Key` header, else the record's `inference_id`
(`/predict_one`), else the first record's (`/predict`). A request with none of them is
spread by weight alone.

The binary is Debian's package unpacked without root by `make haproxy` (into
.tools/haproxy/), $AIRLOOP_HAPROXY, or an `haproxy` on PATH. `running_haproxy` starts it for
as long as a block runs, in its own process group, stopped by its pid when the block ends.
"""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airloop.ops.debian_tools import ToolNotFound, library_path, tool_binary

HAPROXY_ENV = "AIRLOOP_HAPROXY"
TOOLS_BINARY = Path(".tools/haproxy/usr/sbin/haproxy")
# Slots per model: the champion, a canary or the next champion, the warm previous champion
# and challenger, and room for one of them being replaced while the others serve.
SLOTS = 6
ROUTE_KEY_HEADER = "X-Airloop-Key"
# A slot's placeholder address before a server is put in it (the slot is in maintenance).
_UNUSED = "127.0.0.1:9"


class HAProxyNotFound(ToolNotFound):
    """No HAProxy binary: $AIRLOOP_HAPROXY, the project's .tools/ or PATH."""


def haproxy_binary() -> Path:
    try:
        return tool_binary("haproxy", HAPROXY_ENV, TOOLS_BINARY)
    except ToolNotFound as missing:
        raise HAProxyNotFound(str(missing)) from None


def backend_name(model: str) -> str:
    return f"model_{model}"


def slot_name(index: int) -> str:
    return f"slot{index}"


def render_config(frontends: Mapping[str, int], host: str, admin_socket: Path) -> str:
    """haproxy.cfg: for each model {name: port}, a frontend on host:port and a backend of
    SLOTS slots, all in maintenance until `Router.route` fills them."""
    lines = [
        "global",
        f"  stats socket {admin_socket} mode 600 level admin",
        "  maxconn 4000",
        "defaults",
        "  mode http",
        "  option http-keep-alive",
        "  timeout connect 2s",
        "  timeout client 120s",
        "  timeout server 60s",
        "  timeout http-keep-alive 60s",
        # A request whose connection to a server fails (one just stopped) is tried on another.
        "  retries 3",
        "  option redispatch 1",
    ]
    for model, port in sorted(frontends.items()):
        backend = backend_name(model)
        lines += [
            f"frontend model_{model}_in",
            f"  bind {host}:{port}",
            f"  default_backend {backend}",
            f"backend {backend}",
            # The body is read before a server is chosen: the route key may be in it.
            "  option http-buffer-request",
            f"  http-request set-var(txn.route_key) req.hdr({ROUTE_KEY_HEADER})",
            "  http-request set-var(txn.route_key) req.body,json_query('$.record.inference_id')"
            " unless { var(txn.route_key) -m found }",
            "  http-request set-var(txn.route_key) req.body,json_query('$.records[0].inference_id')"
            " unless { var(txn.route_key) -m found }",
            "  balance hash var(txn.route_key)",
            "  hash-type consistent",
            *(f"  server {slot_name(i)} {_UNUSED} weight 0 disabled" for i in range(SLOTS)),
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SlotState:
    slot: str
    address: str
    weight: int
    in_flight: int
    status: str


class Router:
    """HAProxy's runtime API for the models' backends."""

    def __init__(self, admin_socket: Path) -> None:
        self.admin_socket = admin_socket

    def command(self, line: str, timeout: float = 10) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(self.admin_socket))
            connection.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def route(self, model: str, slot: str, port: int, weight: int) -> None:
        """Point `slot` of `model`'s backend at 127.0.0.1:`port` with `weight` (0-256); weight
        0 keeps it ready for a switch but sends it nothing."""
        server = f"{backend_name(model)}/{slot}"
        self._ok(
            f"set server {server} addr 127.0.0.1 port {port}; set server {server} state ready; "
            f"set server {server} weight {weight}"
        )

    def weigh(self, model: str, weights: Mapping[str, int]) -> None:
        """Set the weights of several slots in one exchange with HAProxy."""
        backend = backend_name(model)
        self._ok("; ".join(f"set server {backend}/{slot} weight {w}" for slot, w in weights.items()))

    def drain(self, model: str, slot: str, timeout: float = 30) -> None:
        """Send `slot` no new requests, wait for those in flight to finish, then put it in
        maintenance (it holds no connection after that): its server may be stopped."""
        server = f"{backend_name(model)}/{slot}"
        self._ok(f"set server {server} state drain")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.slots(model)[slot].in_flight == 0:
                break
            time.sleep(0.1)
        self._ok(f"set server {server} state maint")

    def slots(self, model: str) -> dict[str, SlotState]:
        """Each slot of `model`'s backend: its address, weight, requests in flight and status."""
        text = self.command("show stat").lstrip("# ")
        states = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row["pxname"] == backend_name(model) and row["svname"].startswith("slot"):
                states[row["svname"]] = SlotState(
                    row["svname"],
                    row.get("addr", ""),
                    int(row["weight"] or 0),
                    int(row["scur"] or 0),
                    row["status"],
                )
        return states

    def _ok(self, commands: str) -> None:
        answer = self.command(commands).strip()
        # HAProxy answers nothing for a successful `set`, or a note when a value did not change.
        refused = [line for line in answer.splitlines() if line and not line.startswith("no need to change")]
        if refused:
            raise RuntimeError(f"haproxy refused {commands!r}: {answer}")


def check_config(config: Path) -> None:
    """Raise with HAProxy's own message if it rejects `config`."""
    binary = haproxy_binary()
    checked = subprocess.run(
        [str(binary), "-c", "-q", "-f", str(config)], env=library_path(binary), capture_output=True, text=True
    )
    if checked.returncode != 0:
        raise RuntimeError(f"haproxy rejects {config}:\n{checked.stdout}{checked.stderr}")


@contextmanager
def running_haproxy(
    frontends: Mapping[str, int], folder: Path, host: str, timeout: float = 30
) -> Iterator[Router]:
    """Yield the `Router` of an HAProxy listening on host:port for each model in `frontends`;
    its configuration, admin socket and log live in `folder`. Stopped when the block ends."""
    from airloop.packaging.serving import stop_server

    folder.mkdir(parents=True, exist_ok=True)
    admin = _socket_path(folder)
    admin.unlink(missing_ok=True)
    config = folder / "haproxy.cfg"
    config.write_text(render_config(frontends, host, admin))
    check_config(config)
    binary = haproxy_binary()
    with (folder / "haproxy.log").open("wb") as output:
        # -db: stay in the foreground (its pid is the one to stop), log to `output`.
        server = subprocess.Popen(
            [str(binary), "-db", "-f", str(config)],
            env=library_path(binary),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            router = Router(admin)
            _wait_admin(router, server, timeout, folder / "haproxy.log")
            yield router
        finally:
            stop_server(server)


def _socket_path(folder: Path) -> Path:
    """The admin socket's path: in `folder`, unless that is longer than a Unix socket's
    address may be (108 bytes), then in a fresh private temporary folder."""
    import tempfile

    path = folder / "admin.sock"
    return path if len(str(path)) < 100 else Path(tempfile.mkdtemp(prefix="airloop-haproxy-")) / "admin.sock"


def _wait_admin(router: Router, server: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"haproxy exited with {server.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            router.command("show info", timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"haproxy's admin socket {router.admin_socket} did not answer in {timeout} s")
