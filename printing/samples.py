"""Deterministic sample label models (masked only) for previews, benchmarks and tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from .model import LabelModel, MaskedParty

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯"
    "邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_PLACES = (
    ("广东省", "深圳市", "南山区"), ("广东省", "广州市", "天河区"), ("上海市", "上海市", "徐汇区"),
    ("北京市", "北京市", "朝阳区"), ("浙江省", "杭州市", "西湖区"), ("江苏省", "南京市", "鼓楼区"),
    ("四川省", "成都市", "武侯区"), ("湖北省", "武汉市", "洪山区"), ("陕西省", "西安市", "雁塔区"),
    ("福建省", "厦门市", "思明区"), ("山东省", "青岛市", "市南区"), ("河南省", "郑州市", "金水区"),
)
_STREETS = (
    "粤海街道", "沙河街道", "科技园路", "天河北路", "漕溪北路", "建国门外大街", "文三路", "中山北路",
    "人民南路", "珞喻路", "小寨东路", "湖滨南路", "香港中路", "花园路", "学院路", "解放大道",
    "长江路", "和平里东街",
)
_CATEGORIES = ("服装", "数码", "日用品", "文件", "食品", None)
_SERVICES = ("标准快递", "特快", "经济快递")
# Labels are printed in Beijing time (UTC+8); print times are timezone-aware (the label prints the offset).
PRINTED_AT = datetime(2025, 11, 11, 10, 0, tzinfo=timezone(timedelta(hours=8)))
CARRIER = "隐私快递"
_CONSOLIDATION = ("深圳转运中心", "广州转运中心", "上海转运中心", "北京转运中心", "杭州转运中心", "成都转运中心")


def _token(rng: random.Random) -> str:
    # Shaped like secrets.token_urlsafe(24) (192 bits); deterministic here so that output is reproducible.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(32))


def _party(rng: random.Random) -> MaskedParty:
    province, city, district = rng.choice(_PLACES)
    name = rng.choice(_SURNAMES) + "*" * rng.choice((1, 1, 2))
    phone = f"1{rng.choice('3456789')}{rng.randrange(10)}******{rng.randrange(100):02d}"
    return MaskedParty(name, phone, province, city, district, rng.choice(_STREETS) + "****")


def sample_models(n: int, seed: int = 7, *, printed_at: datetime = PRINTED_AT) -> Iterator[LabelModel]:
    """``n`` varied label models: random recipients, a few repeating senders (as in a merchant's batch)."""
    rng = random.Random(seed)
    senders = [_party(rng) for _ in range(5)]
    # Sorting codes come from a routing table: a batch hits a limited set of destinations.
    codes = [f"{rng.randrange(100, 999)}-W{rng.randrange(1, 99):02d}-{rng.randrange(1, 99):02d}"
             for _ in range(60)]
    for i in range(n):
        yield LabelModel(
            waybill_no=f"PW{rng.randrange(10**12):012d}{i % 10}",
            sorting_code=rng.choice(codes),
            recipient=_party(rng),
            sender=senders[i % len(senders)],
            token=_token(rng),
            weight_g=rng.randrange(50, 30000),
            service=rng.choice(_SERVICES),
            category=rng.choice(_CATEGORIES),
            printed_at=printed_at,
            carrier=CARRIER,
            order_tail=f"{rng.randrange(10**6):06d}",
            pieces=rng.choice((1, 1, 1, 2, 3)),
            consolidation=rng.choice(_CONSOLIDATION),
        )


def sample_model() -> LabelModel:
    """The fixed sample used for golden images: masks of 张三丰 / 13812345678 / 科技园路1号3栋502室."""
    recipient = MaskedParty("张**", "138******78", "广东省", "深圳市", "南山区", "粤海街道****")
    sender = MaskedParty("欧***", "021-******34", "上海市", "上海市", "徐汇区", "漕溪北路****")
    return LabelModel("PW4827193650217", "755-W12-08", recipient, sender, "tok_Qm9vYmFyLXRva2VuLTEyOC1iaXRz",
                      1250, "标准快递", "服装", PRINTED_AT, carrier=CARRIER, order_tail="A61207", pieces=1,
                      consolidation="深圳转运中心")
