"""A loopback stand-in for a raw (port 9100) label printer that records every byte it receives."""

from __future__ import annotations

import socket
import threading


class FakePrinter:
    """Accepts connections on 127.0.0.1 (on ``port``, or any free one) and stores each job's bytes.

    ``stall`` makes it accept but never read or close, to provoke timeouts.
    """

    def __init__(self, *, port: int = 0, stall: bool = False) -> None:
        self.jobs: list[bytes] = []
        self.stall = stall
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.stall:
                self._held.append(conn)
                continue
            with conn:
                data = bytearray()
                while chunk := conn.recv(65536):
                    data += chunk
                self.jobs.append(bytes(data))

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._held:
            conn.close()
        self._thread.join(timeout=2)


def free_port() -> int:
    """A port with nothing listening (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
