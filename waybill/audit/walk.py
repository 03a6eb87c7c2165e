"""A walker process of :func:`waybill.audit.verify` (``python -m waybill.audit.walk``): walks the shards it is
given and answers their results.

Reads one JSON document on stdin (``url``, ``key`` in hex, ``batch``, ``tasks``: each a shard's head and the
place to start from, see :func:`waybill.audit.verify.head_to_json`) and writes a JSON list of the shards'
results on stdout. Each batch is read in a short transaction of its own.
"""

from __future__ import annotations

import json
import sys

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from waybill.audit.verify import head_from_json, verify_shard


def main() -> None:
    job = json.loads(sys.stdin.buffer.read())
    # A plain engine, not waybill.db's (that module brings Alembic, most of a walker's start-up): the walk only
    # reads, and SQLite's driver begins no transaction, so takes no lock, for a SELECT.
    engine = create_engine(job["url"], hide_parameters=True)
    factory = sessionmaker(bind=engine)
    key = bytes.fromhex(job["key"])
    results = []
    try:
        for task in job["tasks"]:
            head, from_seq, from_hash, marks = head_from_json(task)
            results.append(verify_shard(factory, key, head, from_seq=from_seq, from_hash=from_hash,
                                        batch=int(job["batch"]), marks=marks).to_json())
    finally:
        engine.dispose()
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    main()
