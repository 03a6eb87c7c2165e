"""Query-string checks shared by the paged listings: no unknown parameter, a bounded ``limit``, an id cursor.

Each refusal is a 422 naming the parameter (``ValidationFailed``), never a 5xx from odd input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import request

from waybill.errors import ValidationFailed
from waybill.ids import looks_like
from waybill.web.context import services


def only(*allowed: str) -> None:
    """Refuse any query parameter not in ``allowed`` (a misspelt filter must not silently list everything)."""
    unknown = set(request.args) - set(allowed)
    if unknown:
        raise ValidationFailed("不支持的查询参数", field=sorted(unknown)[0])


def limit(default: int = 50, maximum: int | None = None) -> int:
    """``?limit=``: ASCII digits in ``1..maximum`` (default ``WAYBILL_PAGE_MAX``); absent: ``default``."""
    maximum = services().settings.page_max if maximum is None else maximum
    raw = request.args.get("limit")
    if raw is None:
        return min(default, maximum)
    # ASCII digits only: str.isdigit() also accepts '²' and other scripts' digits.
    if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= maximum:
        raise ValidationFailed(f"limit 须为 1-{maximum} 的整数", field="limit")
    return int(raw)


def id_cursor(prefix: str) -> str | None:
    """``?cursor=``: an id with ``prefix`` (the last item of the previous page), or ``None``."""
    cursor = request.args.get("cursor")
    if cursor is not None and not looks_like(prefix, cursor):
        raise ValidationFailed("分页游标无效", field="cursor")
    return cursor


def choice(name: str, values: Iterable[str], message: str) -> str | None:
    """``?name=`` one of ``values``, or ``None`` when absent."""
    raw = request.args.get(name)
    if raw is not None and raw not in set(values):
        raise ValidationFailed(message, field=name)
    return raw
