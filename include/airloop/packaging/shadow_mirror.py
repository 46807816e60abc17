"""Copy a sample of a server's traffic to a shadow server, off the request path.

The champion's server, started with $AIRLOOP_SHADOW_URL (and $AIRLOOP_SHADOW_SAMPLE, a share
in (0, 1]), hands every scored batch to a `ShadowMirror` after answering it. The mirror
keeps the sampled records (decided by inference id, as the prediction log samples: the same
records in every worker) and a thread of its own sends them on in batches to the shadow's
`/predict`, each record with its inference id. The shadow server logs its answers with role
`shadow`; nobody reads them back here. A caller never waits on the shadow or fails because
of it: past `max_pending` records are dropped and counted, a shadow that is down counts
errors. Batching is why a full copy costs far less than a second server answering every
request: the shadow scores hundreds of records per call.

Like prediction_sink.py, the bento holds this file beside service.py; it imports nothing
from airloop.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any

try:  # in a bento, beside service.py
    import prediction_sink as sink  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # imported from the airloop package
    from airloop.packaging import prediction_sink as sink

SHADOW_URL_ENV = "AIRLOOP_SHADOW_URL"
SHADOW_SAMPLE_ENV = "AIRLOOP_SHADOW_SAMPLE"


class ShadowMirror:
    def __init__(
        self,
        url: str,
        sample: float,
        id_field: str,
        max_pending: int = 20_000,
        batch_size: int = 500,
        linger_seconds: float = 0.25,
        on_sent: Callable[[int], None] = lambda count: None,
        on_dropped: Callable[[int], None] = lambda count: None,
        on_error: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        if not 0 < sample <= 1:
            raise ValueError(f"${SHADOW_SAMPLE_ENV}: a share in (0, 1], not {sample}")
        self.url, self.sample, self.id_field = urllib.parse.urlsplit(url), sample, id_field
        self.max_pending, self.batch_size, self.linger_seconds = max_pending, batch_size, linger_seconds
        self.on_sent, self.on_dropped, self.on_error = on_sent, on_dropped, on_error
        self._pending: deque[dict[str, Any]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="airloop-shadow-mirror", daemon=True)
        self._thread.start()

    def offer(self, rows: list[dict[str, Any]], ids: list[str]) -> None:
        """Queue the sampled ones of a scored batch's records (their features and keys) for the shadow."""
        chosen = [
            {**row, self.id_field: i}
            for row, i in zip(rows, ids, strict=True)
            if self.sample >= 1 or sink.sampled(i, self.sample)
        ]
        if not chosen:
            return
        with self._ready:
            room = self.max_pending - len(self._pending)
            if room < len(chosen):
                self.on_dropped(len(chosen) - max(room, 0))
                chosen = chosen[: max(room, 0)]
            was_empty = not self._pending
            self._pending.extend(chosen)
            # The first record starts the sender's linger clock; a full batch cuts it short.
            if was_empty or len(self._pending) >= self.batch_size:
                self._ready.notify()

    def close(self, timeout: float = 5) -> None:
        """Send what is queued (for up to `timeout` seconds), then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        import time

        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                # A batch fills for up to `linger_seconds`: one call per few records would
                # cost the shadow (and this worker) a request's overhead per record.
                deadline = time.monotonic() + self.linger_seconds
                while len(self._pending) < self.batch_size and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                if not self._pending:
                    return
                batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
            self._send(batch)

    def _send(self, records: list[dict[str, Any]]) -> None:
        body = json.dumps({"records": records}, default=str).encode()
        try:
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.url.netloc, timeout=30)
            path = f"{self.url.path.rstrip('/')}/predict"
            self._connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = self._connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the shadow answered {response.status}")
            self.on_sent(len(records))
        except (OSError, http.client.HTTPException, RuntimeError) as error:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            self.on_error(error)


def mirror_from_env(id_field: str, **counters: Any) -> ShadowMirror | None:
    """The mirror $AIRLOOP_SHADOW_URL asks for, or None (no shadow)."""
    import os

    url = os.environ.get(SHADOW_URL_ENV)
    if not url:
        return None
    return ShadowMirror(url, float(os.environ.get(SHADOW_SAMPLE_ENV, "1")), id_field, **counters)
