"""Receivers on 127.0.0.1 for notification tests: a webhook that keeps every JSON body
posted, and a mail server that keeps every message sent."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer

from aiosmtpd.controller import Controller


class Receiver(HTTPServer):
    """Serves in a daemon thread from `start()` until `stop()`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def events(self) -> list[str]:
        return [body["event"] for body in list(self.bodies)]

    def start(self) -> Receiver:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class MailReceiver:
    """An SMTP server (aiosmtpd) in its own thread from `start()` until `stop()`."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        message = message_from_bytes(envelope.content, policy=policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def start(self) -> MailReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
