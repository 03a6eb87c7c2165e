"""The gthread worker `waybill serve` runs: slow clients cost a socket, never a thread.

gunicorn's gthread worker hands a connection to a thread as soon as its first byte arrives; the
thread then blocks reading the rest of the request. A client sending its headers one byte at a
time held a thread for as long as it liked, and a handful of such clients held them all (``/healthz``
went unanswered). Here the main loop reads each request's head (and a body up to the app's size
limit) without blocking, on the poller it already runs, and gives the connection to a thread only
when the whole request is in memory. A request not complete within its deadline is answered 408.

Requests gunicorn itself rejects (a malformed request line, oversized headers) get a short JSON
error in the API's shape instead of gunicorn's HTML page, which echoed the offending line; the log
line names the error's type, never its text. No ``Server`` header is sent.
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.http import errors as herr
from gunicorn.http import wsgi
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

# Deadlines for a request to arrive, counted from its first byte being awaited (a new connection or a
# kept-alive one becoming readable): nginx's client_header_timeout / client_body_timeout, as totals.
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
# A request head larger than this is refused (431) without reading on; gunicorn's own limits on the
# request line and on each field (config.py) stay in force below it.
MAX_HEAD_BYTES = 32 * 1024
STOP_GRACE_S = 2.0  # a stopping worker waits this long for requests being read (gunicorn's keep-alive linger)
DEFAULT_BODY_LIMIT = 8 * 1024 * 1024
_RECV = 64 * 1024

_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (herr.LimitRequestLine, 414, "uri_too_long", "请求行过长"),
    (herr.LimitRequestHeaders, 431, "headers_too_large", "请求头过大"),
    (herr.UnsupportedTransferCoding, 501, "not_implemented", "不支持的传输编码"),
    (herr.ExpectationFailed, 417, "expectation_failed", "不支持的 Expect 请求头"),
    (herr.ForbiddenProxyRequest, 403, "forbidden", "禁止访问"),
    (herr.ConfigurationProblem, 500, "internal_error", "服务内部错误"),
    (herr.InvalidResponseHeader, 500, "internal_error", "服务内部错误"),
    (herr.InvalidResponseHeaderName, 500, "internal_error", "服务内部错误"),
    (herr.ParseException, 400, "bad_request", "请求格式错误"),
)
_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 414: "URI Too Long",
            417: "Expectation Failed", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented"}


def error_answer(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error answer with the API's JSON error body; the connection closes after it."""
    body = json.dumps({"error": {"code": code, "message": message, "field": None}},
                      ensure_ascii=False).encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
            "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n\r\n")
    return head.encode("ascii") + body


def classify(exc: BaseException) -> tuple[int, str, str]:
    """(status, error code, message) for an exception that reached gunicorn's error handler."""
    for kind, status, code, message in _ERRORS:
        if isinstance(exc, kind):
            return status, code, message
    return 500, "internal_error", "服务内部错误"


class _NoBannerResponse(wsgi.Response):  # type: ignore[misc]
    """gunicorn's response writer without its ``Server: gunicorn`` header."""

    def default_headers(self) -> list[str]:
        return [h for h in super().default_headers() if not h.startswith("Server:")]


def request_end(buf: bytes | bytearray, body_limit: int) -> int | None:
    """How many bytes of ``buf`` make up one complete request, or None while more must arrive.

    A head that cannot be understood here counts as complete: gunicorn's parser then rejects it with
    the proper error. A body longer than ``body_limit`` is not waited for (the app refuses it, 413).
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    body_start = end + 4
    length: int | None = None
    chunked = False
    for line in bytes(buf[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if length is not None or not value.strip().isdigit():
                return body_start  # duplicated or malformed: the parser decides
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        return _chunked_end(buf, body_start, body_limit)
    if length is None or length > body_limit:
        return body_start
    return body_start + length if len(buf) >= body_start + length else None


def _chunked_end(buf: bytes | bytearray, pos: int, body_limit: int) -> int | None:
    while True:
        if pos > body_limit + MAX_HEAD_BYTES:
            return pos  # larger than the app accepts: not waited for
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return pos  # the parser answers the malformed chunk
        if size == 0:  # the last chunk, then optional trailer fields and an empty line
            if buf[line_end + 2:line_end + 4] == b"\r\n":
                return line_end + 4
            trailer_end = buf.find(b"\r\n\r\n", line_end + 2)
            return None if trailer_end < 0 else trailer_end + 4
        pos = line_end + 2 + size + 2
        if pos > len(buf):
            return None


@dataclass
class _Reading:
    """A connection whose request is being read by the main loop."""

    data: bytearray = field(default_factory=bytearray)
    head_deadline: float = 0.0
    body_deadline: float | None = None
    registered: bool = False  # on the poller

    def deadline(self) -> float:
        return self.head_deadline if self.body_deadline is None else self.body_deadline


class Worker(ThreadWorker):  # type: ignore[misc]
    """gunicorn ``worker_class`` for `waybill serve` (see the module docstring)."""

    def init_process(self) -> None:
        self._reading: dict[Any, _Reading] = {}
        self._stop_at: float | None = None
        # gthread builds each response through wsgi.create, which takes this module-level name: replacing it
        # in the worker process is the one hook for dropping the Server banner.
        wsgi.Response = _NoBannerResponse
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        config = getattr(self.wsgi, "config", None)
        limit = config.get("MAX_CONTENT_LENGTH") if config is not None else None
        self._body_limit = int(limit) if limit else DEFAULT_BODY_LIMIT

    # -- reading requests in the main loop -----------------------------------------------------------------

    def _main_loop_reads(self, conn: Any) -> bool:
        # TLS and HTTP/2 prior knowledge read the socket themselves (waybill serve uses neither: TLS ends at
        # the reverse proxy).
        return not (self.cfg.is_ssl or conn.is_http2 or negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def enqueue_req(self, conn: Any) -> None:
        """New and kept-alive connections are read here first; complete requests go to a thread."""
        if getattr(conn, "_waybill_ready", False) or not self._main_loop_reads(conn):
            conn._waybill_ready = False
            super().enqueue_req(conn)
            return
        state = _Reading(head_deadline=time.monotonic() + HEAD_TIMEOUT_S)
        if conn.parser is not None:  # read-ahead a keep-alive parser holds already (a pipelined request)
            state.data += conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        self._reading[conn] = state
        if self._advance(conn, state):
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            state.registered = True

    def _on_readable(self, conn: Any, _sock: Any) -> None:
        state = self._reading.get(conn)
        if state is None:
            return
        try:
            chunk = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away
            self._leave(conn)
            self._close(conn)
            return
        state.data += chunk
        self._advance(conn, state)

    def _advance(self, conn: Any, state: _Reading) -> bool:
        """Hand the connection on if its request is complete (or refuse it); True while it must wait."""
        end = request_end(state.data, self._body_limit)
        if end is None:
            head_end = state.data.find(b"\r\n\r\n")
            if head_end < 0:
                if len(state.data) <= MAX_HEAD_BYTES:
                    return True
                self._leave(conn)
                self.log.warning("request refused", extra={"status": 431, "error_type": "headers_too_large"})
                self._send_and_close(conn, 431, "headers_too_large", "请求头过大")
                return False
            if state.body_deadline is None:
                state.body_deadline = time.monotonic() + BODY_TIMEOUT_S
                if b"100-continue" in bytes(state.data[:head_end]).lower():
                    # The client waits for this before sending its body; gunicorn sends its own later too,
                    # which a client reads as one more informational answer.
                    with contextlib.suppress(OSError):  # a client that is gone is found on the next read
                        conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            return True
        self._leave(conn)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(state.data))
        conn.data_ready = True
        conn._waybill_ready = True
        self.enqueue_req(conn)
        return False

    def murder_pending(self) -> None:
        """Close connections past their deadline (408), then gunicorn's own pending ones."""
        now = time.monotonic()
        if not self.alive and self._stop_at is None:  # stopping: requests still arriving get a short grace
            self._stop_at = now + STOP_GRACE_S
        stop_at = self._stop_at if self._stop_at is not None else float("inf")
        for conn in [c for c, s in self._reading.items() if now > min(s.deadline(), stop_at)]:
            idle = not self._reading[conn].data
            self._leave(conn)
            if idle:  # a connection that never sent a byte: close quietly
                self._close(conn)
            else:
                self.log.warning("request refused", extra={"status": 408, "error_type": "request_timeout"})
                self._send_and_close(conn, 408, "request_timeout", "请求超时")
        super().murder_pending()

    def _leave(self, conn: Any) -> None:
        """The main loop stops reading ``conn`` (handed on, refused or gone)."""
        state = self._reading.pop(conn, None)
        if state is not None and state.registered:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _send_and_close(self, conn: Any, status: int, code: str, message: str) -> None:
        with contextlib.suppress(OSError):  # the client is gone or not reading: closing is all that is left
            conn.sock.send(error_answer(status, code, message))
        self._close(conn)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    # -- gunicorn's own error answers ----------------------------------------------------------------------

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A short JSON error instead of gunicorn's HTML page; the log names the error type, not its text."""
        status, code, message = classify(exc)
        if status >= 500:
            self.log.exception("error handling request", extra={"status": status, "error_type": type(exc).__name__})
        else:
            self.log.warning("invalid request", extra={"status": status, "error_type": type(exc).__name__})
        try:
            util.write_nonblock(client, error_answer(status, code, message))
        except OSError as err:
            if err.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.debug("failed to send the error answer")
