"""What the benchmarks share: a throw-away database (a temporary PostgreSQL schema, or SQLite in a directory)
and the synthetic shipment bodies they create. Imported by the scripts beside it (``python bench/X.py`` puts
this folder on ``sys.path``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from waybill import db

PROVINCES = [("广东省", "深圳市", "南山区"), ("上海市", "上海市", "浦东新区"), ("北京市", "北京市", "海淀区"),
             ("浙江省", "杭州市", "西湖区"), ("四川省", "成都市", "武侯区")]


@contextmanager
def database_url(tmp: Path, pg_url: str | None) -> Iterator[str]:
    """A database URL for one run: a fresh schema of ``pg_url`` (dropped afterwards), else SQLite in ``tmp``."""
    if not pg_url:
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    schema = "wbbench_" + secrets.token_hex(4)
    admin = db.make_engine(pg_url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    try:
        yield f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    finally:
        admin = db.make_engine(pg_url)
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def body(i: int, prefix: str = "B", *, spread: bool = True, description: str | None = "日用品") -> dict[str, Any]:
    """Shipment ``i`` of a run: distinct order id and recipient; regions spread over PROVINCES (or Shenzhen)."""
    p, c, d = PROVINCES[i % len(PROVINCES)] if spread else PROVINCES[0]
    parcel: dict[str, Any] = {"weight_g": 100 + i % 5000}
    if description is not None:
        parcel["description"] = description
    return {
        "merchant_order_id": f"{prefix}{i:09d}",
        "sender": {"name": "王小明", "phone": "13900001111", "province": "上海市", "city": "上海市",
                   "district": "徐汇区", "address": "漕溪北路88号"},
        "recipient": {"name": f"张{chr(0x4E00 + i % 500)}", "phone": f"138{i % 10**8:08d}", "province": p,
                      "city": c, "district": d, "address": f"科技园路{i % 300}号{i % 9}栋{i % 30}01室"},
        "parcel": parcel,
    }
