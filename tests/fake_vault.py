"""A fake HashiCorp Vault / OpenBao: a real HTTP server (in a thread) with the transit and KV v2 endpoints the
service uses, keeping their semantics: key versions, derived keys (a context is required and binds the
ciphertext), ``min_decryption_version``, ``rewrap``, check-and-set writes, metadata delete, LIST.

Not a mock: the adapter under test talks HTTP to it exactly as to a real server, and its cryptography is real
(AES-256-GCM under per-version keys), so a wrong context, a retired version or a tampered ciphertext fails here
as it would there.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class TransitKey:
    derived: bool
    type: str = "aes256-gcm96"
    versions: dict[int, bytes] = field(default_factory=dict)
    min_decryption_version: int = 1

    @property
    def latest(self) -> int:
        return max(self.versions)

    def key(self, version: int, context: bytes | None) -> bytes:
        if self.derived:
            if not context:
                raise _Refused(400, "missing 'context' for key derivation")
            return HKDF(hashes.SHA256(), 32, None, context).derive(self.versions[version])
        return self.versions[version]


@dataclass
class KvSecret:
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def current(self) -> int:
        return max(self.versions, default=0)


class FakeVault:
    """The server's state and its thread; ``url`` is its address, ``token`` the one token it accepts."""

    def __init__(self, token: str = "s.fake-root-token", transit_mount: str = "transit", kv_mount: str = "secret"):
        self.token = token
        self.transit_mount = transit_mount
        self.kv_mount = kv_mount
        self.transit: dict[str, TransitKey] = {}
        self.kv: dict[str, KvSecret] = {}
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.down = False  # answer 503 to everything (sealed)
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"vault": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeVault:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def create_transit_key(self, name: str, *, derived: bool = True) -> None:
        self.transit[name] = TransitKey(derived=derived, versions={1: os.urandom(32)})

    # -- dispatch ---------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        parts = path.strip("/").split("/")
        if parts[0] != "v1":
            raise _Refused(404, "no handler")
        rest = parts[1:]
        if rest[:1] == [self.transit_mount]:
            return self._transit(method, rest[1:], body)
        if rest[:1] == [self.kv_mount]:
            return self._kv(method, rest[1:], body)
        raise _Refused(404, "no handler for route")

    def _transit_key(self, name: str) -> TransitKey:
        key = self.transit.get(name)
        if key is None:
            raise _Refused(400, "encryption key not found")
        return key

    def _info(self, key: TransitKey) -> dict[str, Any]:
        return {"data": {"type": key.type, "derived": key.derived, "latest_version": key.latest,
                         "min_decryption_version": key.min_decryption_version, "min_encryption_version": 0,
                         "deletion_allowed": False, "keys": {str(v): 1700000000 for v in key.versions}}}

    def _transit(self, method: str, rest: list[str], body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if rest[:1] == ["keys"] and len(rest) == 2:
            if method == "GET":
                if rest[1] not in self.transit:
                    raise _Refused(404, "")
                return 200, self._info(self.transit[rest[1]])
            if method == "POST":
                if rest[1] not in self.transit:
                    self.create_transit_key(rest[1], derived=bool(body.get("derived")))
                return 204, None
        if rest[:1] == ["keys"] and len(rest) == 3 and method == "POST":
            key = self._transit_key(rest[1])
            if rest[2] == "rotate":
                key.versions[key.latest + 1] = os.urandom(32)
                return 200, self._info(key)
            if rest[2] == "config":
                wanted = int(body.get("min_decryption_version", key.min_decryption_version))
                if wanted > key.latest:
                    raise _Refused(400, "cannot set min decryption version above the latest version")
                key.min_decryption_version = max(1, wanted)
                return 200, self._info(key)
        if len(rest) == 2 and method == "POST" and rest[0] in ("encrypt", "decrypt", "rewrap"):
            key = self._transit_key(rest[1])
            context = base64.b64decode(body["context"]) if body.get("context") else None
            if rest[0] == "encrypt":
                version = int(body.get("key_version") or key.latest)
                if version not in key.versions or version < key.min_decryption_version:
                    raise _Refused(400, "requested version for encryption is not available")
                return 200, {"data": self._seal(key, version, base64.b64decode(body["plaintext"]), context)}
            plaintext = self._open(key, str(body.get("ciphertext", "")), context)
            if rest[0] == "decrypt":
                return 200, {"data": {"plaintext": base64.b64encode(plaintext).decode()}}
            return 200, {"data": self._seal(key, key.latest, plaintext, context)}
        raise _Refused(405 if rest[:1] == ["keys"] else 404, "unsupported path")

    @staticmethod
    def _seal(key: TransitKey, version: int, plaintext: bytes, context: bytes | None) -> dict[str, Any]:
        nonce = os.urandom(12)
        blob = nonce + AESGCM(key.key(version, context)).encrypt(nonce, plaintext, None)
        return {"ciphertext": f"vault:v{version}:{base64.b64encode(blob).decode()}", "key_version": version}

    @staticmethod
    def _open(key: TransitKey, ciphertext: str, context: bytes | None) -> bytes:
        prefix, _, rest = ciphertext.partition(":")
        ver, _, b64 = rest.partition(":")
        if prefix != "vault" or not ver.startswith("v") or not ver[1:].isdigit():
            raise _Refused(400, "invalid ciphertext: no prefix")
        version = int(ver[1:])
        if version < key.min_decryption_version:
            raise _Refused(400, "ciphertext or signature version is disallowed by policy (too old)")
        if version not in key.versions:
            raise _Refused(400, "invalid ciphertext: version is too new")
        blob = base64.b64decode(b64)
        try:
            return AESGCM(key.key(version, context)).decrypt(blob[:12], blob[12:], None)
        except InvalidTag:
            raise _Refused(400, "cipher: message authentication failed") from None

    def _kv(self, method: str, rest: list[str], body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        kind, path = rest[0], "/".join(rest[1:])
        if kind == "data":
            secret = self.kv.get(path)
            if method == "GET":
                if secret is None or not secret.versions:
                    raise _Refused(404, "")
                return 200, {"data": {"data": secret.versions[secret.current],
                                      "metadata": {"version": secret.current, "destroyed": False}}}
            if method in ("POST", "PUT"):
                cas = (body.get("options") or {}).get("cas")
                current = 0 if secret is None else secret.current
                if cas is not None and int(cas) != current:
                    raise _Refused(400, "check-and-set parameter did not match the current version")
                secret = self.kv.setdefault(path, KvSecret())
                secret.versions[current + 1] = dict(body.get("data") or {})
                return 200, {"data": {"version": current + 1}}
        if kind == "metadata":
            if method == "LIST":
                prefix = path.rstrip("/") + "/"
                children = sorted({p[len(prefix):].split("/")[0] + ("/" if "/" in p[len(prefix):] else "")
                                   for p in self.kv if p.startswith(prefix)})
                if not children:
                    raise _Refused(404, "")
                return 200, {"data": {"keys": children}}
            if method == "GET":
                secret = self.kv.get(path)
                if secret is None:
                    raise _Refused(404, "")
                return 200, {"data": {"current_version": secret.current,
                                      "versions": {str(v): {"destroyed": False} for v in secret.versions}}}
            if method == "DELETE":
                self.kv.pop(path, None)  # every version and the metadata: nothing left to undelete
                return 204, None
        raise _Refused(405, "unsupported operation")


class _Handler(BaseHTTPRequestHandler):
    vault: FakeVault

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        method = "LIST" if self.command == "GET" and "list=true" in query else self.command
        with self.vault.lock:
            self.vault.requests.append((method, path))
            self.vault.bodies.append(raw)
            try:
                if self.vault.down:
                    raise _Refused(503, "Vault is sealed")
                if self.headers.get("X-Vault-Token") != self.vault.token:
                    raise _Refused(403, "permission denied")
                status, doc = self.vault.handle(method, path, json.loads(raw) if raw else {})
            except _Refused as exc:
                status, doc = exc.status, {"errors": [str(exc)] if str(exc) else []}
        payload = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _serve


@contextmanager
def running_vault(**kwargs: Any) -> Iterator[FakeVault]:
    """A started fake Vault, stopped afterwards."""
    vault = FakeVault(**kwargs).start()
    try:
        yield vault
    finally:
        vault.stop()
