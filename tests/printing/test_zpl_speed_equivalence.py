"""The optimised ZPL renderer emits exactly the bytes the original (straightforward) one did.

The hashes below were captured from the renderer *before* its speed work (per-character ``_GlyphJob.line``,
no line cache), so any change to glyph names, download order, coordinates or rounding shows up here.
Regenerate only for an intended output change: ``python -m tests.printing.test_zpl_speed_equivalence``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

import printing
from printing import LabelModel, MaskedParty
from printing.config import current
from printing.layout import layout_label
from printing.render_zpl import iter_zpl
from printing.samples import PRINTED_AT, sample_models
from printing.templates import get_template

N = 300
# sha256 of the whole job (all chunks joined) per (text mode, size), captured before the optimisation and
# recaptured for intended output changes only (QR origin and Code128 centring, issue 9: printed-label tests).
GOLDEN: dict[tuple[str, str], str] = {
    ("glyphs", "100x150"): "dab87fa15e9e06353f362ae53a3d5a7f5222c356116a65358f28cddbfc4e3f60",
    ("glyphs", "100x180"): "e5a4f72bc7ae7efbbea68b3744f6ecb90f80f566e04270539ef645001ccd5de0",
    ("glyphs", "76x130"): "6e5716d02d43466d4016e66a6f6b8dbf525b89c3015fd44392a9247eb4eeb30f",
    ("resident", "100x150"): "23a5771ac90f3750e726bdaeda3b2851d235ed464e2237f0551fc036dcc64c2a",
    ("resident", "100x180"): "0f138b5602dbb461cdb683048b6c559eea26b2f06e80da482e78c4a68c6bc222",
    ("resident", "76x130"): "6035be6818e47bad95283f3da8abe3c6dc293cdec8e90a857118717c1e816961",
}
# Odd inputs (ZPL control characters, spaces, characters the font lacks, truncation), both modes, 100x150.
GOLDEN_ODD: dict[str, str] = {
    "glyphs": "fcbd68c77e0f8e0b9cbafc7c3fcb6ecd02833431641f666e40ee1ba60c0a2c75",
    "resident": "76ba07283d5352fa27f9912646e1fb3531a22decd604d8643e0c0bb61f900112",
}


def _odd_models() -> list[LabelModel]:
    """Labels that exercise the unusual paths: escapes, blank glyphs, replaced characters, wrapping."""
    r = MaskedParty("张**", "138******78", "广东省", "深圳市", "南山区", "粤海街道 ^~\\ 路****")
    s = MaskedParty("欧***", "021-******34", "上海市", "上海市", "徐汇区", "漕溪北路\U00020000é****")
    base = LabelModel("PW4827193650217", "755-W12-08", r, s, "tok^~\\Qm9vYmFyLXRva2VuLTEyOC1iaXRz", 1250,
                      "标准快递", "服装 ^~", PRINTED_AT)
    far = "新疆维吾尔自治区伊犁哈萨克自治州霍尔果斯市经济开发区" * 8 + "****"
    long_r = replace(r, name="司" + "*" * 60, address=far)
    long_s = replace(s, name="欧" + "*" * 40, address="内蒙古自治区呼和浩特市赛罕区" * 5 + "****")
    long = replace(base, recipient=long_r, sender=long_s, category="超长品类名称" * 10, service="次日达" * 20)
    return [base, long, base, replace(base, waybill_no="PW^1~2\\3"), long]


def _job_hash(models: list[LabelModel], mode: str, size: str) -> str:
    """sha256 of one ZPL job rendered straight from layouts (the gate is tested elsewhere)."""
    t = get_template(size)
    layouts = [layout_label(m, t, symbols=False) for m in models]
    h = hashlib.sha256()
    for chunk in iter_zpl(layouts, t, text_mode=mode):
        h.update(chunk)
    return h.hexdigest()


def _render_hash(mode: str, size: str) -> str:
    """sha256 of a ``printing.iter_render`` job of ``sample_models(N)`` in ``mode`` (the configured ZPL text mode,
    as the service sets it; the previous configuration comes back afterwards)."""
    before = current()
    printing.configure(replace(before, zpl_text=mode))
    try:
        h = hashlib.sha256()
        for chunk in printing.iter_render(sample_models(N), "zpl", size):
            h.update(chunk)
        return h.hexdigest()
    finally:
        printing.configure(before)


@pytest.mark.parametrize(("mode", "size"), sorted(GOLDEN))
def test_zpl_output_unchanged(mode: str, size: str) -> None:
    assert _render_hash(mode, size) == GOLDEN[(mode, size)]


@pytest.mark.parametrize("mode", sorted(GOLDEN_ODD))
def test_zpl_odd_inputs_unchanged(mode: str) -> None:
    assert _job_hash(_odd_models(), mode, "100x150") == GOLDEN_ODD[mode]


@pytest.mark.parametrize("mode", ["glyphs", "resident"])
def test_tiny_caches_same_bytes(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # Every cache bound hit constantly (evictions, generation swaps, admission resets): same bytes.
    from printing import layout, render_zpl

    for mod, name, value in ((render_zpl, "_RUNS_MAX", 3), (render_zpl, "_MEMO_MAX", 4),
                             (render_zpl, "_SEEN_MAX", 5), (layout, "_FIT_CACHE_MAX", 2),
                             (layout, "_SEEN_MAX", 3)):
        monkeypatch.setattr(mod, name, value)
    assert _render_hash(mode, "100x150") == GOLDEN[(mode, "100x150")]


@pytest.mark.parametrize("mode", ["glyphs", "resident"])
def test_second_job_identical(mode: str) -> None:
    # Caches shared between jobs (lines, glyphs) must not leak one job's state into the next.
    models = list(sample_models(50, seed=11))
    assert _job_hash(models, mode, "76x130") == _job_hash(models, mode, "76x130")
    assert _job_hash(models[10:], mode, "76x130") != _job_hash(models, mode, "76x130")


def test_gate_memo_keeps_refusing() -> None:
    # The gate memoises verdicts per (name, phone, address); a cached pass must not cover other values or types.
    ok = next(sample_models(1))
    for _ in range(2):
        printing.check_release(ok)
    for field, value in (("name", 12), ("phone", "13812345678"), ("address", "粤海街道1号****")):
        bad = replace(ok, recipient=replace(ok.recipient, **{field: value}))
        for _ in range(2):
            with pytest.raises(printing.UnmaskedField) as exc:
                printing.check_release(bad)
            assert exc.value.field_name == f"recipient.{field}"


if __name__ == "__main__":  # print fresh constants (only for an intended output change)
    for mode, size in sorted(GOLDEN):
        print(f'    ("{mode}", "{size}"): "{_render_hash(mode, size)}",')
    for mode in sorted(GOLDEN_ODD):
        print(f'    "{mode}": "{_job_hash(_odd_models(), mode, "100x150")}",')
