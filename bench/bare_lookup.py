"""A bare QR-token lookup endpoint: the baseline `bench/scan.py` compares the courier scan against.

``POST /lookup`` ``{"token"}`` resolves the token exactly as the service does (``labels.resolve_token``:
HMAC of the token, one indexed join on the same PostgreSQL database) and answers ``200 {"shipment_id"}``
or ``404`` — with no authentication, no quota, no audit event, no decryption and no commit. Whatever the
real scan costs beyond this is the price of those.

It is served by gunicorn configured like ``waybill serve`` (same worker class, worker and thread counts,
no access log), so the two differ only in what the request does. It reads the same environment as the
service (``WAYBILL_DATABASE_URL``, ``WAYBILL_KEY_FILE`` / ``WAYBILL_DATA_DIR``). Used only by the benchmark:

    python bench/bare_lookup.py --host 127.0.0.1 --port 8091 --workers 4
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy.orm import Session

from waybill import db, keyfile, labels
from waybill.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """A plain Flask app (the same framework the service uses, so the baseline does not flatter it)."""
    settings = settings or load_settings()
    token_key = keyfile.load(settings.key_file).secret("qr_token")
    # The same engine factory (pool size, pre-ping) as the service, so connection handling is equal too.
    engine = db.make_engine(settings.database_url)
    app = Flask("bare_lookup")

    @app.post("/lookup")
    def lookup() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        raw = body.get("token") if isinstance(body, dict) else None
        with Session(engine) as session:
            shipment = labels.resolve_token(session, token_key, raw) if isinstance(raw, str) else None
            if shipment is None:
                return jsonify({"error": "not_found"}), 404
            return jsonify({"shipment_id": shipment.id}), 200

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    return app


def serve(host: str, port: int, workers: int) -> None:
    """Run the app under gunicorn with the configuration `waybill serve` uses (see waybill/commands/main.py)."""
    from gunicorn.app.base import BaseApplication

    from waybill.serving.config import gunicorn_options

    settings = load_settings()

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = gunicorn_options(host=host, port=port, workers=workers,
                                       threads=4 if settings.is_sqlite else 2)
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return create_app(settings)

    _App().run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
