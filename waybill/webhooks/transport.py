"""Sending one webhook request: to the checked address, with the URL's name in Host and TLS, no redirects.

:class:`HttpTransport` (``http.client`` of the standard library, as the Aliyun adapters use ``urllib``) opens the
connection to :attr:`Target.address` itself, so nothing resolves the name again after the SSRF guard checked it;
the ``Host`` header and, over HTTPS, the SNI name and the certificate check use the URL's host name. A ``3xx`` is
answered as it came (the caller counts it as a failed attempt): no redirect is followed. The connection and each
read are bounded by timeouts, the whole exchange by a deadline, and at most :data:`MAX_RESPONSE_BYTES` of the
answer are read (and thrown away: only the status counts).
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


class Transport(Protocol):
    """Sends one request (tests and the bench use the real one against loopback receivers)."""

    def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Answer: ...


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target) -> None:
        super().__init__(target.host, target.port, timeout=CONNECT_TIMEOUT_S)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT_S)
        self.sock.settimeout(READ_TIMEOUT_S)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=CONNECT_TIMEOUT_S, context=context)
        self._address = target.address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT_S)
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(READ_TIMEOUT_S)


class HttpTransport:
    """POSTs over a connection to the checked address (see the module docstring)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._tls = context or ssl.create_default_context()

    def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Answer:
        conn: http.client.HTTPConnection = _PinnedHTTPS(target, self._tls) if target.scheme == "https" \
            else _PinnedHTTP(target)
        started = time.monotonic()
        try:
            conn.request("POST", target.path, body=body,
                         headers={**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT,
                                  "Connection": "close"})
            response = conn.getresponse()
            left = MAX_RESPONSE_BYTES
            while left > 0 and time.monotonic() - started < DEADLINE_S:
                chunk = response.read(min(left, 8192))
                if not chunk:
                    break
                left -= len(chunk)
            return Answer(response.status)
        except TimeoutError:
            return Answer(None, "timeout")
        except ssl.SSLError:
            return Answer(None, "tls")
        except (http.client.HTTPException, ValueError):
            return Answer(None, "protocol")
        except OSError:
            return Answer(None, "connect")
        finally:
            conn.close()
