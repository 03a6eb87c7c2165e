"""Raw printing to floor printers over TCP (port 9100, "JetDirect"/raw).

A job is streamed as it is rendered. Connecting is retried with backoff (the printer may be busy with
another job or rebooting); once bytes have gone out a failure is *not* retried automatically, because a
resend could print labels twice — the caller gets a :class:`PrintFailed` saying how far it got.
Nothing is ever dropped silently: every outcome is a :class:`PrintReport` or an exception.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORT = 9100


_SIOCOUTQ = 0x5411  # Linux: TIOCOUTQ on a TCP socket = bytes not yet acknowledged by the peer


class PrintFailed(RuntimeError):
    """The job did not reach the printer completely.

    ``sent``: bytes handed to the connection before the failure (some may still have been in flight);
    ``acked``: bytes the printer's TCP stack had acknowledged — surely received — or None where the system
    cannot tell (Linux can: the unacknowledged part of the send queue, ``SIOCOUTQ``).
    """

    def __init__(self, message: str, *, attempts: int, sent: int, acked: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.sent = sent
        self.acked = acked


@dataclass(frozen=True)
class PrintReport:
    host: str
    port: int
    attempts: int
    bytes_sent: int
    seconds: float


def parse_printer_url(url: str) -> tuple[str, int]:
    """``tcp://host[:port]`` -> (host, port); anything else is a ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError("printer must be tcp://host[:port]")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("printer port must be 1-65535") from None
    return parts.hostname, port


def connect(url: str, *, timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
            sleep: Callable[[float], None] = time.sleep) -> tuple[socket.socket, int]:
    """Open a connection to the printer, retrying with exponential backoff; returns (socket, attempts)."""
    host, port = parse_printer_url(url)
    attempts = 0
    while True:
        attempts += 1
        try:
            conn = socket.create_connection((host, port), timeout=timeout)
            conn.settimeout(timeout)
            return conn, attempts
        except OSError as exc:  # refused, unreachable, timed out
            if attempts > retries:
                raise PrintFailed(f"printer {host}:{port} unreachable after {attempts} attempts "
                                  f"({type(exc).__name__})", attempts=attempts, sent=0) from None
            sleep(backoff * 2 ** (attempts - 1))


def _unacked(conn: socket.socket) -> int | None:
    """Bytes in the send queue the peer has not acknowledged yet (Linux ``SIOCOUTQ``), None if unknown."""
    try:
        raw = fcntl.ioctl(conn.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return None
    return int(struct.unpack("i", raw)[0])


def send(conn: socket.socket, chunks: Iterable[bytes], *, attempts: int = 1) -> int:
    """Stream ``chunks`` over an open connection and wait until the printer has taken them all."""
    sent = 0
    acked: int | None = 0
    with conn:
        try:
            for chunk in chunks:
                conn.sendall(chunk)
                sent += len(chunk)
                queued = _unacked(conn)
                # What the printer has surely received so far (never less than an earlier reading).
                acked = None if queued is None or acked is None else max(acked, sent - queued)
            # Half-close and wait for the printer to close its side: only then has it taken every byte.
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
        except OSError as exc:
            raise PrintFailed(f"printer failed after {sent} bytes ({type(exc).__name__}); "
                              "not resent automatically to avoid duplicate labels", attempts=attempts,
                              sent=sent, acked=acked) from None
    return sent


def send_raw(url: str, chunks: Iterable[bytes], *, timeout: float = 10.0, retries: int = 3,
             backoff: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> PrintReport:
    """Send ``chunks`` to the printer at ``url``; retry connecting, never resend after data went out."""
    host, port = parse_printer_url(url)
    t0 = time.monotonic()
    conn, attempts = connect(url, timeout=timeout, retries=retries, backoff=backoff, sleep=sleep)
    sent = send(conn, chunks, attempts=attempts)
    return PrintReport(host, port, attempts, sent, time.monotonic() - t0)
