"""A loopback webhook receiver: ``http.server`` in a thread, recording every request's raw bytes.

Answers come from a plan: ``receiver.answer(500, 200)`` makes the next two requests answer 500 then 200; after
the plan, 200. It speaks HTTP/1.1 and keeps connections alive (as merchants' servers do); ``connections`` counts
the connections it accepted. A ``3xx`` answer carries a ``Location`` to ``/elsewhere`` on the same receiver
(which a client following redirects would then request).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    raw_headers: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._plan: list[int] = []
        self._lock = threading.Lock()
        self.connections = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as servers do: the answer's headers and body go out at once

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner.connections += 1

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with owner._lock:
                    owner.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                   body, bytes(self.headers.as_bytes())))
                    status = owner._plan.pop(0) if owner._plan else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{owner.port}/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, *statuses: int) -> None:
        with self._lock:
            self._plan.extend(statuses)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
