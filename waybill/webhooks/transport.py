"""Sending webhook requests: to the checked address, with the URL's name in Host and TLS, no redirects.

:class:`HttpTransport` (``http.client`` of the standard library, as the Aliyun adapters use ``urllib``) opens the
connection to :attr:`Target.address` itself, so nothing resolves the name again after the SSRF guard checked it;
the ``Host`` header and, over HTTPS, the SNI name and the certificate check use the URL's host name. A ``3xx`` is
answered as it came (the caller counts it as a failed attempt): no redirect is followed. The connection and each
read are bounded by timeouts, the whole exchange by a deadline, and at most :data:`MAX_RESPONSE_BYTES` of the
answer are read (and thrown away: only the status counts).

A batch of deliveries to one endpoint goes over one kept-alive HTTP/1.1 connection (:meth:`HttpTransport.open`,
:class:`Connection`): the connection is made to the pinned address once and reused while the server keeps it
open; when the server closes it, the next request opens a new one to the same pinned address. A request that
fails on a *reused* connection before any answer (the server closed it while idle) is sent once more on a fresh
one: the same id and body, which at-least-once delivery allows.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from waybill.webhooks.guard import Target

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
DEADLINE_S = 15.0
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "privacy-waybill-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What came back: a status code, or an error code (``timeout``, ``connect``, ``tls``, ``protocol``)."""

    status_code: int | None
    error: str | None = None


class Connection(Protocol):
    """Requests to one target over a kept-alive connection (see the module docstring)."""

    def post(self, headers: Mapping[str, str], body: bytes) -> Answer: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Sends requests (tests and the bench use the real one against loopback receivers)."""

    def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Answer: ...

    def open(self, target: Target) -> Connection: ...


def _connect(address: str, port: int) -> socket.socket:
    sock = socket.create_connection((address, port), CONNECT_TIMEOUT_S)
    # http.client sends the headers and the body in two writes: with Nagle's algorithm the body would wait for
    # the server's delayed ACK of the headers (40 ms a request on Linux) on a kept-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target) -> None:
        super().__init__(target.host, target.port, timeout=CONNECT_TIMEOUT_S)
        self._address = target.address

    def connect(self) -> None:
        self.sock = _connect(self._address, self.port)
        self.sock.settimeout(READ_TIMEOUT_S)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=CONNECT_TIMEOUT_S, context=context)
        self._address = target.address
        self._tls = context

    def connect(self) -> None:
        raw = _connect(self._address, self.port)
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(READ_TIMEOUT_S)


def _exchange(conn: http.client.HTTPConnection, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
    """One request and its answer (read up to the limit within the deadline); raises the connection's errors."""
    started = time.monotonic()
    conn.request("POST", path, body=body, headers={**headers, "Content-Type": "application/json",
                                                   "User-Agent": USER_AGENT})
    response = conn.getresponse()
    left = MAX_RESPONSE_BYTES
    while left > 0 and time.monotonic() - started < DEADLINE_S:
        chunk = response.read(min(left, 8192))
        if not chunk:
            break
        left -= len(chunk)
    if not response.isclosed():
        # Not read to its end (too long, or past the deadline): the connection cannot carry another request.
        conn.close()
    return Answer(response.status)


def _failure(exc: Exception) -> Answer:
    if isinstance(exc, TimeoutError):
        return Answer(None, "timeout")
    if isinstance(exc, ssl.SSLError):
        return Answer(None, "tls")
    if isinstance(exc, http.client.HTTPException | ValueError):
        return Answer(None, "protocol")
    return Answer(None, "connect")


_ERRORS = (OSError, http.client.HTTPException, ValueError)
# Errors meaning "the server had closed the idle connection", before it answered anything.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class KeptAlive:
    """Requests to one pinned target over one HTTP/1.1 connection, reopened (to the same address) when closed."""

    def __init__(self, target: Target, tls: ssl.SSLContext) -> None:
        self._target = target
        self._conn: http.client.HTTPConnection = _PinnedHTTPS(target, tls) if target.scheme == "https" \
            else _PinnedHTTP(target)
        self.used = False  # a request went over the current connection (it may have gone stale since)

    def post(self, headers: Mapping[str, str], body: bytes) -> Answer:
        reused = self.used and self._conn.sock is not None
        self.used = True
        try:
            return _exchange(self._conn, self._target.path, headers, body)
        except _STALE as exc:
            self._conn.close()
            if not reused:
                return _failure(exc)
        except _ERRORS as exc:
            self._conn.close()
            return _failure(exc)
        try:  # once more on a fresh connection: the reused one had been closed by the server
            return _exchange(self._conn, self._target.path, headers, body)
        except _ERRORS as exc:
            self._conn.close()
            return _failure(exc)

    def close(self) -> None:
        self._conn.close()


class HttpTransport:
    """POSTs over connections to the checked address (see the module docstring)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._tls = context or ssl.create_default_context()

    def open(self, target: Target) -> KeptAlive:
        """A kept-alive connection to ``target`` (connected at its first request)."""
        return KeptAlive(target, self._tls)

    def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Answer:
        """One request over a connection of its own."""
        conn = self.open(target)
        try:
            return conn.post({**headers, "Connection": "close"}, body)
        finally:
            conn.close()
