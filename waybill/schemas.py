"""Request and response schemas. The same models validate requests and generate the OpenAPI document.

Validation normalises as it goes (phones to their canonical form, whitespace trimmed) and turns
every failure into a Chinese message naming the field — never echoing the submitted value.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from waybill.errors import ValidationFailed
from waybill.phones import InvalidPhone, normalize_phone

WEIGHT_MIN_G = 1
WEIGHT_MAX_G = 70_000
PIECES_MAX = 99

_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


def _no_control_chars(value: str) -> str:
    # Control and format characters (other than the joiners emoji need) break labels and logs.
    for ch in value:
        cat = unicodedata.category(ch)
        if cat == "Cc" or (cat == "Cf" and ch not in "\u200d\ufe0f"):
            raise PydanticCustomError("control_char", "包含不允许的控制字符")
    return unicodedata.normalize("NFC", value)


def iso_utc(moment: datetime) -> str:
    """A UTC timestamp as the API writes it: ISO 8601 with ``Z``."""
    return moment.isoformat().replace("+00:00", "Z")


# A timestamp in a response: a ``datetime`` in the model (``date-time`` in the document), written by :func:`iso_utc`.
UtcTimestamp = Annotated[datetime, PlainSerializer(iso_utc, return_type=str)]


class OutModel(BaseModel):
    """Base of the response models: what a route answers is ``Model.model_validate(value).model_dump(mode="json")``.

    Fields named in ``omit_none`` are left out of the answer when they are ``None`` (the document shows them
    as optional): e.g. a batch item carries ``shipment`` or ``error``, never both as ``null``.
    """

    model_config = ConfigDict(from_attributes=True)
    omit_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self.omit_none:
            if data.get(name, ...) is None:
                del data[name]
        return data

class PartyIn(BaseModel):
    """A sender or recipient as submitted by a merchant."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=50, description="姓名")
    phone: str = Field(min_length=1, max_length=40, description="手机或固定电话，可带 +86/0086、空格或短横线")
    # Checked against the GB/T 2260 divisions in the domain (waybill/regions.py): 422 invalid_region.
    province: str = Field(min_length=2, max_length=20, description="省/自治区/直辖市（GB/T 2260，可用简称）")
    city: str = Field(min_length=2, max_length=30, description="市（直辖市可写本市或“市辖区”）")
    district: str = Field(min_length=1, max_length=30, description="区/县（须属于该市）")
    address: str = Field(min_length=2, max_length=200, description="街道、楼栋、单元、门牌")

    _clean = field_validator("name", "province", "city", "district", "address")(_no_control_chars)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        try:
            return normalize_phone(value).number
        except InvalidPhone as exc:
            raise PydanticCustomError("phone_invalid", str(exc)) from None


class ParcelIn(BaseModel):
    model_config = _STRICT

    weight_g: int = Field(ge=WEIGHT_MIN_G, le=WEIGHT_MAX_G, description="重量（克）")
    pieces: int = Field(default=1, ge=1, le=PIECES_MAX, description="件数（打印在面单上）")
    description: str | None = Field(default=None, max_length=200, description="物品描述（加密保存）")

    _clean = field_validator("description")(lambda v: None if v is None else _no_control_chars(v))


class ConsentsIn(BaseModel):
    """Which privacy notice the sender was shown and which optional purposes they agreed to."""

    model_config = _STRICT

    notice_version: str = Field(min_length=1, max_length=32, description="GET /v1/privacy-notice 返回的 version")
    purposes: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=20, description="同意的可选处理目的 id（必需目的无须列出）")


class ShipmentIn(BaseModel):
    model_config = _STRICT

    merchant_order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:]+$",
                                   description="商户订单号，每个商户内唯一")
    sender: PartyIn
    recipient: PartyIn
    parcel: ParcelIn
    consents: ConsentsIn | None = Field(default=None, description="隐私告知版本与同意的可选目的；不填则为当前版本")


class BatchIn(BaseModel):
    """Batch envelope. Items are validated one by one so each stands or fails alone."""

    model_config = _STRICT

    shipments: Annotated[list[ShipmentIn], Field(min_length=1, max_length=1000)]


class PartyOut(OutModel):
    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str


class ParcelOut(OutModel):
    weight_g: int
    pieces: int
    has_description: bool


class ConsentsOut(OutModel):
    notice_version: str
    purposes: list[str]


# waybill.tracking.STATUSES (a test checks that they agree)
ShipmentStatus = Literal["created", "printed", "in_transit", "out_for_delivery", "delivery_failed", "returning",
                         "returned", "delivered", "cancelled"]


class ShipmentOut(OutModel):
    omit_none = frozenset({"consents"})

    id: str
    waybill_no: str
    status: ShipmentStatus
    sorting_code: str
    merchant_order_id: str
    # null once that party's personal data is destroyed (retention, or the party's own deletion request)
    sender: PartyOut | None
    recipient: PartyOut | None
    parcel: ParcelOut
    created_at: UtcTimestamp
    # "present"; "destroyed" once retention (or both parties' deletions) destroyed it; "partially_destroyed"
    # when one party's was destroyed at their request.
    personal_data: Literal["present", "partially_destroyed", "destroyed"] = "present"
    # When the contract ended (delivered, cancelled or returned to the sender); retention counts from here.
    ended_at: UtcTimestamp | None = None
    consents: ConsentsOut | None = None


class ShipmentPage(OutModel):
    items: list[ShipmentOut]
    next_cursor: str | None


class BatchItemError(OutModel):
    code: str
    message: str
    field: str | None


class BatchResult(OutModel):
    omit_none = frozenset({"shipment", "error"})

    index: int
    status: Literal["created", "error"]
    shipment: ShipmentOut | None = None
    error: BatchItemError | None = None


class BatchOut(OutModel):
    results: list[BatchResult]


class ErrorDetail(BaseModel):
    """One of several invalid fields of a request body (a 422 naming more than one field lists them all)."""

    field: str
    code: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None
    # Only when more than one field is invalid: every one of them (``field`` names the first).
    details: list[ErrorDetail] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


_MESSAGES: dict[str, str] = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不支持的字段",
    "string_type": "应为字符串",
    "int_type": "应为整数",
    "bool_type": "应为布尔值",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "list_type": "应为数组",
    "string_pattern_mismatch": "格式不正确",
    "string_too_short": "长度不能少于 {min_length} 个字符",
    "string_too_long": "长度不能超过 {max_length} 个字符",
    "too_short": "至少需要 {min_length} 个元素",
    "too_long": "元素数量不能超过 {max_length}",
    "greater_than_equal": "不能小于 {ge}",
    "less_than_equal": "不能大于 {le}",
    "literal_error": "取值不在允许范围内",
    "enum": "取值不在允许范围内",
}


_SAFE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


def _path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # An unknown key is the caller's text: echo it only if it looks like a field name.
            name = part if _SAFE_KEY.match(part) else "<unknown>"
            out += f".{name}" if out else name
    return out


def to_validation_failed(exc: ValidationError, prefix: str = "") -> ValidationFailed:
    """Turn a pydantic error into our error: first failure's field + Chinese message, no input echo."""
    errors = exc.errors(include_input=False, include_url=False)
    details = []
    for err in errors:
        template = _MESSAGES.get(err["type"])
        if template is None:
            # Our own custom errors carry a safe Chinese message; anything else gets a generic one.
            message = err["msg"] if err["type"] in ("phone_invalid", "control_char", "admin_name") else "字段值无效"
        else:
            message = template.format(**{k: v for k, v in (err.get("ctx") or {}).items()
                                         if isinstance(v, int | float | str)})
        details.append({"field": _path(err["loc"], prefix), "code": err["type"], "message": message})
    first = details[0]
    failed = ValidationFailed(first["message"], field=first["field"] or None)
    failed.details = details  # type: ignore[attr-defined]
    return failed


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse(model: type[ModelT], data: Any, prefix: str = "") -> ModelT:
    """Validate ``data`` against ``model`` (the result has the model's type) or raise :class:`ValidationFailed`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_validation_failed(exc, prefix) from None
