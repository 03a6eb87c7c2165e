"""`waybill audit ...`: verify the chains against the signed checkpoints, make a checkpoint, publish the key,
and check checkpoints with the public key alone (an outsider's check: no database, no key file)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import click

from waybill import audit
from waybill import witnesses as witness
from waybill.audit import checkpoints, logcheck
from waybill.commands.common import emit, existing_services, fail, read_settings
from waybill.permissions import SYSTEM
from waybill.services import Services
from waybill.uow import unit_of_work


def _witness_file(svc: Services, given: Path | None) -> Path | None:
    """``--witness FILE``, else the configured witness when it is a file (a URL witness cannot be read back)."""
    if given is not None:
        return given
    setting = svc.settings.audit_witness
    return Path(setting) if setting and not witness.is_url(setting) else None


def run_verify(svc: Services, *, since_checkpoint: bool, witness_file: Path | None) -> logcheck.LogVerdict:
    """Verify (reads in short transactions of their own), then record the confirmation of a sound log."""
    signer = checkpoints.Signer(svc.keys)
    verdict = logcheck.check_log(svc.read_session_factory, svc.keys.secret("audit_chain"), signer.public_key,
                                 witness=witness_file, since_checkpoint=since_checkpoint)
    with unit_of_work(svc.session_factory) as tx:
        logcheck.record_confirmation(tx.session, signer, verdict)
        audit.record(tx.session, SYSTEM, "audit.verify", outcome="ok" if verdict.ok else "broken",
                     purpose="since checkpoint" if since_checkpoint else "full")
    return verdict


def register(group: click.Group) -> None:
    @group.command("verify")
    @click.option("--since-checkpoint", is_flag=True,
                  help="Walk from the last checkpoint a verify confirmed (a day's events, not all of them).")
    @click.option("--witness", "witness_file", type=click.Path(dir_okay=False, path_type=Path),
                  help="A witness file to compare the checkpoint log with (default: WAYBILL_AUDIT_WITNESS if a file).")
    def audit_verify(since_checkpoint: bool, witness_file: Path | None) -> None:
        """Verify every chain and its head against the signed checkpoints; exit 1 naming the shard and the first
        bad event (or the bad checkpoint) if anything was tampered with."""
        svc = existing_services(read_settings())
        verdict = run_verify(svc, since_checkpoint=since_checkpoint, witness_file=_witness_file(svc, witness_file))
        if not verdict.ok:
            fail(verdict.as_dict(), 1)
        emit(verdict.as_dict())

    @group.command("checkpoint")
    def audit_checkpoint() -> None:
        """Sign every shard's head into the checkpoint log (and hand it to the witness, if one is configured)."""
        svc = existing_services(read_settings())
        signer = checkpoints.Signer(svc.keys)
        try:
            with unit_of_work(svc.session_factory) as tx:
                row, refused, witnessed = witness.issue(tx, signer, witness.make(svc.settings.audit_witness),
                                                        SYSTEM)
                doc = checkpoints.document(row) if row is not None else None
        except witness.WitnessFailed as exc:
            fail({"ok": False, "error": {"code": "witness_failed", "message": exc.reason}}, 1)
        if refused is not None or doc is None:
            fail({"ok": False, "error": {"code": "checkpoint_refused", "message": str(refused),
                                         "shard": refused.shard if refused else None}}, 1)
        emit({"ok": True, "checkpoint": doc, "witness": witnessed})

    @group.command("public-key")
    def audit_public_key() -> None:
        """Print the checkpoints' Ed25519 public key (raw, base64) and its key id: publish it."""
        signer = checkpoints.Signer(existing_services(read_settings()).keys)
        emit({"public_key": base64.b64encode(signer.public_key).decode(), "key_id": signer.key_id})

    @group.command("check-checkpoints")
    @click.option("--public-key", "public_key", required=True, help="The published public key (base64).")
    @click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def audit_check_checkpoints(public_key: str, source: Path) -> None:
        """Check checkpoints with the public key alone: SOURCE is a witness file (JSON lines) or a saved answer of
        GET /v1/audit/checkpoints. Each signature and field, and the links between consecutive ones."""
        try:
            key = base64.b64decode(public_key, validate=True)
        except ValueError:
            fail({"ok": False, "error": {"code": "bad_public_key", "message": "not base64"}}, 2)
        text = source.read_text(encoding="utf-8")
        try:
            page = json.loads(text)
            docs: list[Any] = page["items"] if isinstance(page, dict) and "items" in page else [page]
        except ValueError:
            docs = [d for d in checkpoints.read_witness_file(source)]
        problems: list[dict[str, Any]] = []
        found: dict[int, checkpoints.Checkpoint] = {}
        for n, doc in enumerate(docs, start=1):
            try:
                if not isinstance(doc, dict):
                    raise checkpoints.CheckpointInvalid("malformed document")
                cp = checkpoints.check_document(doc, key)
            except checkpoints.CheckpointInvalid as exc:
                problems.append({"item": n, "reason": exc.reason})
                continue
            other = found.get(cp.id)
            if other is not None and other.hash != cp.hash:
                # Two different checkpoints signed under one id: a split view (two logs shown to two parties).
                problems.append({"checkpoint": cp.id, "reason": "two different checkpoints with this id"})
            found[cp.id] = cp
        ids = sorted(found)
        for missing in sorted(set(range(ids[0], ids[-1] + 1)) - set(ids)) if ids else []:
            problems.append({"checkpoint": missing, "reason": "missing between the others"})
        for cp_id, cp in sorted(found.items()):
            before = found.get(cp_id - 1)
            if before is not None and cp.prev_hash != before.hash:
                problems.append({"checkpoint": cp_id, "reason": "chain link broken"})
        doc_out = {"ok": not problems, "checked": len(found), "problems": problems}
        if problems:
            fail(doc_out, 1)
        emit(doc_out)
