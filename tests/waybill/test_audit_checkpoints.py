"""Signed checkpoints of the audit chains: what a hash chain alone cannot catch (a truncated and rewound tail), a
forged checkpoint of every kind, a witness outside the database, and incremental verify from a confirmed
checkpoint. Per shard: one chain (``WAYBILL_AUDIT_SHARDS=1``) and 16, tampering with one shard's chain."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests.conftest import run
from tests.webhooks.receiver import Receiver
from waybill import audit, keyfile, outbox, tasks, witnesses
from waybill.audit import checkpoints, logcheck
from waybill.audit.chain import GENESIS, shard_of
from waybill.audit.models import AuditCheckpoint, AuditVerification
from waybill.models import AuditEvent
from waybill.permissions import SYSTEM
from waybill.uow import unit_of_work

OBJECT = "thing-7"


@pytest.fixture(params=[1, 16], ids=["one-chain", "16-shards"])
def env(fresh_env, request):
    return fresh_env(audit_shards=request.param)


def shard(env):
    return shard_of(OBJECT, SYSTEM.actor, env.settings.audit_shards)


def write_events(env, n=5, *, others=3, tag="e"):
    svc = env.services()
    with svc.session_factory() as s:
        for i in range(n):
            audit.record(s, SYSTEM, "test.event", object_type="thing", object_id=OBJECT, fields=[f"{tag}{i}"])
        for i in range(others):
            audit.record(s, SYSTEM, "test.other", object_type="thing", object_id=f"other-{tag}-{i}")
        s.commit()
    return svc


def checkpoint(env, witness=None):
    svc = env.services()
    with unit_of_work(svc.session_factory) as tx:
        row, refused, _n = witnesses.issue(tx, checkpoints.Signer(svc.keys), witness, SYSTEM)
        assert refused is None and row is not None
        return checkpoints.document(row)


def check(env, **kwargs):
    svc = env.services()
    signer = checkpoints.Signer(svc.keys)
    return logcheck.check_log(svc.read_session_factory, svc.keys.secret("audit_chain"), signer.public_key, **kwargs)


def check_and_confirm(env, **kwargs):
    verdict = check(env, **kwargs)
    svc = env.services()
    with unit_of_work(svc.session_factory) as tx:
        logcheck.record_confirmation(tx.session, checkpoints.Signer(svc.keys), verdict)
    return verdict


def sql(env, statement, **params):
    with env.engine.begin() as c:
        return c.execute(text(statement), params)


def place(env, seq):
    return f"shard = {shard(env)} AND shard_seq = {seq}"


def shard_seq_of_object(env):
    with env.engine.connect() as c:
        return c.execute(text(f"SELECT max(shard_seq) FROM audit_events WHERE shard = {shard(env)}")).scalar_one()


def signed_seq(env, doc):
    """The place the checkpoint ``doc`` signed for OBJECT's chain."""
    return {h["shard"]: h["seq"] for h in doc["heads"]}[shard(env)]


def truncate_and_rewind(env, keep):
    k = shard(env)
    sql(env, f"DELETE FROM audit_events WHERE shard = {k} AND shard_seq > {keep}")
    tip = sql(env, f"SELECT hash FROM audit_events WHERE {place(env, keep)}").scalar_one()
    sql(env, "UPDATE audit_head SET seq = :s, hash = :h WHERE id = :k", s=keep, h=tip, k=k)


# --- the signed message --------------------------------------------------------------------------------------


def test_a_checkpoint_signs_every_head_and_an_outsider_checks_it_with_the_public_key_alone(env):
    write_events(env, 5, others=20)
    svc = env.services()
    with svc.session_factory() as s:
        rows = s.execute(text("SELECT id, seq, hash FROM audit_head")).all()
    heads = {int(r[0]): (int(r[1]), bytes(r[2]).hex()) for r in rows}
    doc = checkpoint(env)  # (its own audit event joins a chain after the heads were read)
    assert {h["shard"]: (h["seq"], h["hash"]) for h in doc["heads"]} == {k: v for k, v in heads.items() if v[0]}
    assert doc["id"] == 1 and doc["prev_hash"] == GENESIS.hex() and doc["tree_size"] == 25
    lines = doc["signed"].splitlines()
    assert lines[:2] == ["waybill-audit-checkpoint/v1", "id 1"] and lines[4] == f"prev {'0' * 64}"
    assert all(line.startswith("head ") for line in lines[5:]) and len(lines) == 5 + len(doc["heads"])
    # The outsider's check, as the README shows it: cryptography and hashlib, nothing of waybill.
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = checkpoints.Signer(svc.keys).public_key
    Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(doc["signature"]), doc["signed"].encode())
    assert hashlib.sha256(doc["signed"].encode()).hexdigest() == doc["hash"]
    assert checkpoints.check_document(doc, public).id == 1
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Audit checkpoints"):]
    snippet = section[section.index("```python\n") + 10:section.index("```", section.index("```python\n") + 10)]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 (the README's own example, run as written)
    namespace["check"](doc, base64.b64encode(public).decode())
    forged = {**doc, "heads": [{**doc["heads"][0], "seq": doc["heads"][0]["seq"] - 1}, *doc["heads"][1:]]}
    with pytest.raises(AssertionError):
        namespace["check"](forged, base64.b64encode(public).decode())
    second = checkpoint(env)
    assert second["id"] == 2 and second["prev_hash"] == doc["hash"]


def test_the_signing_key_has_its_own_purpose_and_an_old_key_file_gains_it(tmp_path):
    assert "audit_checkpoint" in keyfile.PURPOSES and "audit_checkpoint" in keyfile.ADDED_PURPOSES
    path = tmp_path / "keys.json"
    keyfile.create(path, keyfile.generate())
    doc = json.loads(path.read_text())
    del doc["secrets"]["audit_checkpoint"]
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    with pytest.raises(keyfile.KeyFileError, match="audit_checkpoint"):
        keyfile.load(path)
    assert keyfile.add_missing_secrets(path) == ["audit_checkpoint"]
    keys = keyfile.load(path)
    signer = checkpoints.Signer(keys)
    # Derived from that secret alone (stable), and unlike any other purpose's.
    assert checkpoints.Signer(keyfile.load(path)).public_key == signer.public_key
    other = keyfile.KeyMaterial(keys.primary_master_key, keys.master_keys,
                                {**keys.secrets, "audit_checkpoint": keys.secrets["audit_chain"]})
    assert checkpoints.Signer(other).public_key != signer.public_key
    with pytest.raises(checkpoints.CheckpointInvalid):
        checkpoints.parse("waybill-audit-checkpoint/v1\nid 1\n")


# --- what the chain alone misses ------------------------------------------------------------------------------


def test_truncate_and_rewind_is_caught_by_a_checkpoint(env):
    write_events(env, 5)
    signed = signed_seq(env, checkpoint(env))
    assert check(env).ok
    truncate_and_rewind(env, 3)
    assert audit.verify(env.services().read_session_factory, env.services().keys.secret("audit_chain")).ok
    verdict = check(env)
    assert not verdict.ok
    bad = verdict.result.first_bad
    assert bad == {"shard": shard(env), "seq": 4, "reason": "head behind a checkpoint", "checkpoint_seq": signed}
    # ...and no new checkpoint blesses the rewound chain.
    svc = env.services()
    with unit_of_work(svc.session_factory) as tx:
        row, refused, _ = witnesses.issue(tx, checkpoints.Signer(svc.keys), None, SYSTEM)
    assert row is None and refused is not None and (refused.shard, refused.seq) == (shard(env), signed)
    with env.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(AuditCheckpoint)).scalar_one() == 1
        assert c.execute(select(AuditEvent.outcome).where(AuditEvent.action == "audit.checkpoint")
                         .order_by(AuditEvent.seq.desc()).limit(1)).scalar_one() == "refused"


def test_truncated_rewound_and_regrown_chain_differs_from_the_checkpoint(env):
    """The tail deleted, the head rewound, and new events appended through the service (which holds the key):
    every link is sound again, the head is not behind, but the hash at the signed place is not the signed one."""
    write_events(env, 5)
    signed = signed_seq(env, checkpoint(env))
    truncate_and_rewind(env, 3)
    write_events(env, 12, others=0, tag="new")
    verdict = check(env)
    assert not verdict.ok
    assert verdict.result.first_bad == {"shard": shard(env), "seq": signed, "reason": "differs from a checkpoint",
                                        "checkpoint_seq": signed}


def test_a_deleted_head_row_of_a_signed_chain_is_caught(env):
    write_events(env, 5)
    signed = signed_seq(env, checkpoint(env))
    k = shard(env)
    sql(env, f"DELETE FROM audit_events WHERE shard = {k}")
    sql(env, f"DELETE FROM audit_head WHERE id = {k}")
    verdict = check(env)
    assert not verdict.ok
    assert {"shard": k, "seq": 1, "reason": "head missing", "checkpoint_seq": signed} in [
        r.first_bad for r in verdict.result.shards]


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert", "reorder"])
def test_tampering_after_a_checkpoint_is_named_per_shard(env, tamper):
    write_events(env, 3)
    p = signed_seq(env, checkpoint(env)) + 2  # after the checkpoint: an incremental verify reads it
    assert check_and_confirm(env).ok
    write_events(env, 5, others=2, tag="late")
    k = shard(env)
    if tamper == "edit":
        sql(env, f"UPDATE audit_events SET outcome = 'denied' WHERE {place(env, p)}")
    elif tamper == "delete":
        sql(env, f"DELETE FROM audit_events WHERE {place(env, p)}")
    elif tamper == "insert":
        top = shard_seq_of_object(env)
        for q in range(top, p - 1, -1):  # from the top, so no place is taken twice
            sql(env, f"UPDATE audit_events SET shard_seq = {q + 1} WHERE {place(env, q)}")
        with env.engine.begin() as c:
            row = dict(c.execute(select(AuditEvent.__table__).where(
                AuditEvent.shard == k, AuditEvent.shard_seq == p - 1)).one()._mapping)
            row.pop("seq")
            row.update(shard_seq=p, action="forged")
            c.execute(AuditEvent.__table__.insert().values(**row))
    else:
        sql(env, f"UPDATE audit_events SET shard_seq = 1000 WHERE {place(env, p)}")
        sql(env, f"UPDATE audit_events SET shard_seq = {p} WHERE {place(env, p + 1)}")
        sql(env, f"UPDATE audit_events SET shard_seq = {p + 1} WHERE {place(env, 1000)}")
    for since in (False, True):
        verdict = check(env, since_checkpoint=since)
        assert verdict.from_checkpoint == (1 if since else None)
        assert not verdict.ok and verdict.result.first_bad["shard"] == k and verdict.result.first_bad["seq"] == p


# --- forged checkpoints -----------------------------------------------------------------------------------------


def _two_checkpoints(env):
    write_events(env, 3)
    checkpoint(env)
    write_events(env, 2, tag="b")
    checkpoint(env)
    write_events(env, 2, tag="c")
    return checkpoint(env)


def _problem(env, **kwargs):
    verdict = check(env, **kwargs)
    assert not verdict.ok and verdict.problems
    assert verdict.as_dict()["first_bad"] == verdict.problems[0] or verdict.result.first_bad
    return verdict.problems[0]


def test_a_bad_signature_is_caught(env):
    _two_checkpoints(env)
    with env.engine.begin() as c:
        sig = bytearray(c.execute(text("SELECT signature FROM audit_checkpoints WHERE id = 2")).scalar_one())
        sig[10] ^= 1
        c.execute(text("UPDATE audit_checkpoints SET signature = :s WHERE id = 2"), {"s": bytes(sig)})
    assert _problem(env) == {"checkpoint": 2, "reason": "bad signature"}
    sql(env, "DELETE FROM audit_checkpoints WHERE id = 3")
    svc = env.services()  # nothing is linked to a forged last checkpoint
    with unit_of_work(svc.session_factory) as tx:
        row, refused, _ = witnesses.issue(tx, checkpoints.Signer(svc.keys), None, SYSTEM)
    assert row is None and (refused.shard, refused.seq) == (-1, 2) and "bad signature" in refused.reason


def test_edited_heads_are_caught(env):
    doc = _two_checkpoints(env)
    first_head = next(line for line in doc["signed"].splitlines() if line.startswith("head "))
    _, k, seq, digest = first_head.split()
    lowered = f"head {k} {int(seq) + 1} {digest}"
    with env.engine.begin() as c:
        body = c.execute(text("SELECT body FROM audit_checkpoints WHERE id = 3")).scalar_one()
        c.execute(text("UPDATE audit_checkpoints SET body = :b WHERE id = 3"), {"b": body.replace(first_head, lowered)})
    assert _problem(env) == {"checkpoint": 3, "reason": "bad signature"}
    sql(env, "UPDATE audit_checkpoints SET body = :b WHERE id = 3", b=doc["signed"])
    sql(env, "UPDATE audit_checkpoints SET tree_size = 1 WHERE id = 3")
    assert _problem(env) == {"checkpoint": 3, "reason": "row differs from its signed message"}


def test_a_deleted_checkpoint_row_breaks_the_chain_of_checkpoints(env):
    _two_checkpoints(env)
    sql(env, "DELETE FROM audit_checkpoints WHERE id = 2")
    assert _problem(env) == {"checkpoint": 2, "reason": "checkpoints missing before this one", "found": 3}
    sql(env, "DELETE FROM audit_checkpoints WHERE id = 1")
    assert _problem(env)["checkpoint"] == 1


def test_a_broken_link_is_caught_even_when_signed_with_the_key(env):
    """An insider holding the signing key re-signs checkpoint 3 with another ``prev``: the link still fails."""
    _two_checkpoints(env)
    svc = env.services()
    signer = checkpoints.Signer(svc.keys)
    with svc.session_factory() as s:
        row = s.get(AuditCheckpoint, 3)
        cp = checkpoints.parse(row.body)
        forged = checkpoints.Checkpoint(cp.id, cp.at, cp.tree_size, bytes(32), cp.heads)
        row.body, row.prev_hash, row.hash = forged.message(), bytes(32), forged.hash
        row.signature = signer.sign(forged.message())
        s.commit()
    assert _problem(env) == {"checkpoint": 3, "reason": "chain link broken"}


def test_a_checkpoint_signed_by_another_key_is_caught(env, tmp_path):
    _two_checkpoints(env)
    stranger = checkpoints.Signer(keyfile.generate())
    with env.engine.begin() as c:
        body = c.execute(text("SELECT body FROM audit_checkpoints WHERE id = 3")).scalar_one()
        c.execute(text("UPDATE audit_checkpoints SET signature = :s, key_id = :k WHERE id = 3"),
                  {"s": stranger.sign(body), "k": stranger.key_id})
    assert _problem(env) == {"checkpoint": 3, "reason": "bad signature"}


# --- the witness -----------------------------------------------------------------------------------------------


def test_deleted_checkpoint_rows_and_a_rewind_behind_them_are_caught_against_the_witness(env, tmp_path):
    path = tmp_path / "witness.jsonl"
    witness = witnesses.FileWitness(path)
    write_events(env, 3)
    first = signed_seq(env, checkpoint(env, witness))
    write_events(env, 3, tag="b")
    second = signed_seq(env, checkpoint(env, witness))
    assert len(path.read_text().splitlines()) == 2 and check(env, witness=path).ok
    # The insider truncates the chain to between the two checkpoints and deletes checkpoint 2's row: without the
    # witness that is consistent again; the witness still holds checkpoint 2.
    truncate_and_rewind(env, first + 1)
    sql(env, "DELETE FROM audit_checkpoints WHERE id = 2")
    assert check(env).ok
    verdict = check(env, witness=path)
    assert not verdict.ok
    assert {"checkpoint": 2, "reason": "checkpoint rows deleted (the witness holds it)"} in verdict.problems
    assert verdict.result.first_bad == {"shard": shard(env), "seq": first + 2, "reason": "head behind a checkpoint",
                                        "checkpoint_seq": second}


def test_a_witness_mismatch_and_a_forged_witness_line_are_caught(env, tmp_path):
    path = tmp_path / "witness.jsonl"
    witness = witnesses.FileWitness(path)
    write_events(env, 3)
    checkpoint(env, witness)
    checkpoint(env, witness)
    # Checkpoint 2 replaced in the table by another one signed with the key (heads moved on meanwhile).
    sql(env, "DELETE FROM audit_checkpoints WHERE id = 2")
    write_events(env, 2, tag="x")
    checkpoint(env)
    assert {"checkpoint": 2, "reason": "checkpoint differs from the witness"} in check(env, witness=path).problems
    lines = path.read_text().splitlines()
    doc = json.loads(lines[0])
    doc["heads"][0]["seq"] += 1
    path.write_text(json.dumps(doc) + "\n" + lines[1] + "\n")
    assert {"witness_line": 1, "reason": "witness: document differs from its signed message"} in check(
        env, witness=path).problems


def test_a_file_witness_catches_up_on_what_it_missed(env, tmp_path):
    path = tmp_path / "w" / "witness.jsonl"
    write_events(env, 2)
    checkpoint(env)  # no witness configured then
    checkpoint(env)
    doc = checkpoint(env, witnesses.FileWitness(path))
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert ids == [1, 2, 3] and doc["id"] == 3 and check(env, witness=path).ok


# --- incremental verify ---------------------------------------------------------------------------------------


def test_incremental_verify_starts_at_the_confirmed_checkpoint(env):
    write_events(env, 6, others=10)
    checkpoint(env)
    full = check_and_confirm(env)
    assert full.ok and full.from_checkpoint is None and full.result.events == 16 + 1  # + the checkpoint's event
    with env.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(AuditVerification)).scalar_one() == 1
    write_events(env, 3, others=2, tag="day2")
    checkpoint(env)
    # Tampering before the confirmed checkpoint is not read again: that is what "incremental" means...
    sql(env, f"UPDATE audit_events SET outcome = 'denied' WHERE {place(env, 2)}")
    inc = check_and_confirm(env, since_checkpoint=True)
    assert inc.ok and inc.from_checkpoint == 1 and inc.latest.id == 2
    assert inc.result.events == 3 + 2 + 1 + 1  # the day's events and the two checkpoints' own events
    assert all(r.from_seq > 0 for r in inc.result.shards if r.head_seq and r.shard in {shard(env)})
    # ...a full verify still reads everything and finds it.
    full_again = check(env)
    assert not full_again.ok and full_again.result.first_bad["seq"] == 2
    # Tampering after the confirmed checkpoint (2 now) is caught incrementally.
    write_events(env, 2, others=0, tag="day3")
    last = shard_seq_of_object(env)
    sql(env, f"UPDATE audit_events SET outcome = 'denied' WHERE {place(env, last)}")
    broken = check(env, since_checkpoint=True)
    assert broken.from_checkpoint == 2 and not broken.ok
    assert broken.result.first_bad == {"shard": shard(env), "seq": last, "reason": "content altered"}


def test_without_a_confirmation_since_checkpoint_is_a_full_walk(env):
    write_events(env, 4)
    checkpoint(env)
    verdict = check(env, since_checkpoint=True)
    assert verdict.ok and verdict.from_checkpoint is None and verdict.result.events == 4 + 3 + 1


def test_a_forged_confirmation_is_refused(env):
    write_events(env, 4)
    checkpoint(env)
    check_and_confirm(env)
    write_events(env, 2, tag="b")
    checkpoint(env)
    # Point the confirmation at the later checkpoint (so that tampering before it would go unread).
    row2 = sql(env, "SELECT hash FROM audit_checkpoints WHERE id = 2").scalar_one()
    sql(env, "UPDATE audit_verifications SET checkpoint_id = 2, checkpoint_hash = :h", h=row2)
    verdict = check(env, since_checkpoint=True)
    assert not verdict.ok and verdict.problems[0]["reason"] == "bad confirmation signature"
    assert verdict.from_checkpoint is None  # and it walked everything instead


def test_a_sound_incremental_verify_confirms_the_new_checkpoint(env):
    write_events(env, 3)
    checkpoint(env)
    check_and_confirm(env)
    write_events(env, 3, tag="b")
    checkpoint(env)
    assert check_and_confirm(env, since_checkpoint=True).ok
    svc = env.services()
    with svc.read_session_factory() as s:
        cp, problem = checkpoints.last_confirmed(s, checkpoints.Signer(svc.keys).public_key)
    assert problem is None and cp is not None and cp.id == 2


# --- the schedule, the URL witness, the command line -------------------------------------------------------------


def test_the_scheduled_checkpoint_runs_once_per_slot_and_feeds_the_witness(fresh_env, tmp_path):
    path = tmp_path / "witness.jsonl"
    env = fresh_env(audit_checkpoint_minutes=10, audit_witness=str(path))
    (job,) = [j for j in tasks.jobs(env.settings) if j.topic == tasks.CHECKPOINT_TOPIC]
    assert job.every_s == 600
    off = dataclasses.replace(env.settings, audit_checkpoint_minutes=0)
    assert tasks.CHECKPOINT_TOPIC not in {j.topic for j in tasks.jobs(off)}
    write_events(env, 3)
    svc, other_node = env.services(), env.services()
    now = datetime(2026, 12, 2, 3, 0, 5, tzinfo=UTC)
    started = outbox.schedule_due(svc.session_factory, [job], now=now)
    assert len(started) == 1
    assert outbox.schedule_due(other_node.session_factory, [job], now=now + timedelta(minutes=5)) == []
    assert outbox.run_message(svc.session_factory, tasks.handlers(svc), started[0])
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["id"] == 1 and check(env, witness=path).ok
    # The next slot makes the next one, linked to the first.
    (later,) = outbox.schedule_due(svc.session_factory, [job], now=now + timedelta(minutes=10))
    assert outbox.run_message(svc.session_factory, tasks.handlers(svc), later)
    docs = [json.loads(x) for x in path.read_text().splitlines()]
    assert [d["id"] for d in docs] == [1, 2] and docs[1]["prev_hash"] == docs[0]["hash"]


def test_a_url_witness_gets_each_checkpoint_and_a_refusal_raises(fresh_env):
    env = fresh_env()
    write_events(env, 2)
    receiver = Receiver()
    try:
        witness = witnesses.make(receiver.url)
        assert isinstance(witness, witnesses.UrlWitness)
        doc = checkpoint(env, witness)
        (got,) = receiver.received
        assert got.headers["content-type"] == "application/json" and got.json == doc
        public = checkpoints.Signer(env.services().keys).public_key
        assert checkpoints.check_document(got.json, public).id == 1
        receiver.answer(503)
        with pytest.raises(witnesses.WitnessFailed, match="status_503"):
            checkpoint(env, witness)
    finally:
        receiver.close()
    # Stored before the witness was asked: the failed POST left checkpoint 2 in the table (the task is retried).
    with env.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(AuditCheckpoint)).scalar_one() == 2


def test_settings_of_the_checkpoints(tmp_path):
    from waybill.settings import SettingsError, load_settings

    base = {"data_dir": tmp_path}
    assert load_settings(environ={}, **base).audit_checkpoint_minutes == 15
    got = load_settings(environ={"WAYBILL_AUDIT_CHECKPOINT_MINUTES": "0", "WAYBILL_AUDIT_WITNESS": "/w/a.jsonl"},
                        **base)
    assert got.audit_checkpoint_minutes == 0 and got.audit_witness == "/w/a.jsonl"
    with pytest.raises(SettingsError, match="WAYBILL_AUDIT_CHECKPOINT_MINUTES"):
        load_settings(environ={"WAYBILL_AUDIT_CHECKPOINT_MINUTES": "-1"}, **base)
    with pytest.raises(SettingsError, match="WAYBILL_AUDIT_WITNESS"):
        load_settings(environ={"WAYBILL_AUDIT_WITNESS": "ftp://x/y"}, **base)


def test_the_command_line(cli_env, tmp_path):
    witness_file = tmp_path / "witness.jsonl"
    cli_env = {**cli_env, "WAYBILL_AUDIT_WITNESS": str(witness_file)}
    run(["init"], cli_env)
    run(["merchants", "create", "甲"], cli_env)
    made = json.loads(run(["audit", "checkpoint"], cli_env).stdout)
    assert made["ok"] and made["checkpoint"]["id"] == 1 and made["witness"] == 1
    full = json.loads(run(["audit", "verify"], cli_env).stdout)
    assert full["ok"] and full["checkpoints"]["latest"] == 1 and full["checkpoints"]["witness"] == 1
    run(["merchants", "create", "乙"], cli_env)
    run(["audit", "checkpoint"], cli_env)
    inc = json.loads(run(["audit", "verify", "--since-checkpoint"], cli_env).stdout)
    assert inc["ok"] and inc["checkpoints"]["from_checkpoint"] == 1 and inc["events"] < full["events"] + 6
    key = json.loads(run(["audit", "public-key"], cli_env).stdout)
    # The outsider's check: the public key and the witness file, no database and no key file.
    outsider = {"WAYBILL_DATA_DIR": str(tmp_path / "nothing-here")}
    checked = json.loads(run(["audit", "check-checkpoints", "--public-key", key["public_key"], str(witness_file)],
                             outsider).stdout)
    assert checked == {"ok": True, "checked": 2, "problems": []}
    # A copy missing a checkpoint between two others is reported (the outsider cannot tell "never signed" from
    # "withheld" otherwise).
    run(["audit", "checkpoint"], cli_env)
    three = witness_file.read_text().splitlines()
    gap = tmp_path / "gap.jsonl"
    gap.write_text(three[0] + "\n" + three[2] + "\n")
    proc = run(["audit", "check-checkpoints", "--public-key", key["public_key"], str(gap)], outsider, check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["problems"] == [{"checkpoint": 2, "reason": "missing between the others"}]
    lines = witness_file.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["signature"] = base64.b64encode(bytes(64)).decode()
    witness_file.write_text(lines[0] + "\n" + json.dumps(forged) + "\n")
    proc = run(["audit", "check-checkpoints", "--public-key", key["public_key"], str(witness_file)], outsider,
               check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["problems"] == [{"item": 2, "reason": "bad signature"}]
    # The table and the witness now disagree on checkpoint 2: verify fails (and names it).
    proc = run(["audit", "verify", "--witness", str(witness_file)], cli_env, check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["checkpoints"]["problems"][0] == {"witness_line": 2,
                                                                     "reason": "witness: bad signature"}
