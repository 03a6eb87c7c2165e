"""Label rendering benchmark: labels/s per format, peak memory of a 10,000-label PDF job, widget baseline.

Run: ``python bench/labels.py`` (add ``--quick`` for a smoke run). Single process, single thread: the
numbers are one core's. Targets: PDF job >= 300 labels/s and >= 20x the reportlab-widget baseline,
ZPL >= 20,000 labels/s, 10,000-label PDF job peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import printing  # noqa: E402
from printing.layout import layout_label, slot_texts  # noqa: E402
from printing.samples import sample_models  # noqa: E402
from printing.templates import get_template  # noqa: E402

SIZE = "100x150"


def _rate(n: int, fn, repeat: int = 1) -> float:
    """Labels per second of ``fn`` (which renders ``n`` labels), best of ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def _drain(it) -> int:
    total = 0
    for chunk in it:
        total += len(chunk)
    return total


def widget_baseline(models, *, one_document: bool = True) -> float:
    """The plainest reportlab label: Canvas, drawString, Code128 and QrCodeWidget (shape objects).

    ``one_document``: all labels as pages of one canvas (a job); else one canvas per label.
    """
    from reportlab.graphics import renderPDF
    from reportlab.graphics.barcode import code128, qr
    from reportlab.graphics.shapes import Drawing
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    from printing.fonts import PDF_FONT_NAME, pdf_font

    pdf_font()  # registered once, like the real renderer
    t = get_template(SIZE)
    buf = open(os.devnull, "wb")  # noqa: SIM115
    c = canvas.Canvas(buf, pagesize=(t.width * mm, t.height * mm))
    for model in models:
        if not one_document:
            c = canvas.Canvas(buf, pagesize=(t.width * mm, t.height * mm))
        texts = slot_texts(model)
        code128.Code128(model.waybill_no, barHeight=14 * mm, barWidth=0.375 * mm).drawOn(c, 10 * mm, 133 * mm)
        y = 125
        for text in texts.values():
            c.setFont(PDF_FONT_NAME, 12)
            c.drawString(5 * mm, y * mm, text)
            y -= 8
        w = qr.QrCodeWidget(model.token)
        b = w.getBounds()
        sx, sy = 36 * mm / (b[2] - b[0]), 36 * mm / (b[3] - b[1])
        d = Drawing(36 * mm, 36 * mm, transform=[sx, 0, 0, sy, 0, 0])
        d.add(w)
        renderPDF.draw(d, c, 3 * mm, 3 * mm)
        c.showPage()
        if not one_document:
            c.save()
    if one_document:
        c.save()
    buf.close()
    return len(models)


def _peak_rss_mb() -> float:
    # VmHWM is per address space, so it starts afresh at exec; ru_maxrss would carry over the (big)
    # parent's high-water mark through fork+exec on Linux.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_memory(n: int) -> None:
    """Run in a subprocess: stream an n-label PDF job to /dev/null and print peak RSS (MB) before/after."""
    models = sample_models(n)  # a generator: the batch itself is not held in memory either
    printing.render_label(next(sample_models(1)), "pdf", SIZE)  # fonts loaded: baseline
    before = _peak_rss_mb()
    with open(os.devnull, "wb") as sink:
        t0 = time.perf_counter()
        size = 0
        for chunk in printing.iter_render(models, "pdf", SIZE):
            sink.write(chunk)
            size += len(chunk)
        dt = time.perf_counter() - t0
    after = _peak_rss_mb()
    print(f"{before:.1f} {after:.1f} {size} {dt:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    ap.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        child_memory(args.child_memory)
        return
    q = args.quick
    n_pdf, n_job, n_png, n_zpl, n_mem, n_base = (20, 200, 20, 2000, 1000, 5) if q else (
        300, 1000, 200, 20000, 10000, 40)
    printing.check_fonts()
    try:
        from reportlab.lib.rl_accel import fp_str

        accel = "C (rl_accel)" if type(fp_str).__name__ == "builtin_function_or_method" else "pure Python"
    except ImportError:
        accel = "pure Python"
    print(f"python {sys.version.split()[0]}, reportlab accelerator: {accel}, size {SIZE}, "
          "1 process / 1 thread")

    one = list(sample_models(n_pdf, seed=1))
    r_single = _rate(n_pdf, lambda: [printing.render_label(m, "pdf", SIZE) for m in one])
    print(f"PDF single label (render_label, full document each): {r_single:8.0f} labels/s")

    job = list(sample_models(n_job, seed=2))
    r_job = _rate(n_job, lambda: _drain(printing.iter_render(job, "pdf", SIZE)))
    print(f"PDF {n_job}-label streamed job:                      {r_job:8.0f} labels/s")

    png = list(sample_models(n_png, seed=3))
    r_png = _rate(n_png, lambda: _drain(printing.iter_render(png, "png", SIZE)))
    print(f"PNG (203 dpi, 1-bit):                             {r_png:8.0f} labels/s")

    zpl = list(sample_models(n_zpl, seed=4))
    r_zpl = {}
    for mode in ("glyphs", "resident"):
        printing.configure(printing.PrintConfig(zpl_text=mode))
        _drain(printing.iter_render(zpl[:500], "zpl", SIZE))  # warm-up (glyph rasteriser, caches)
        r_zpl[mode] = _rate(n_zpl, lambda: _drain(printing.iter_render(zpl, "zpl", SIZE)), repeat=3)
        print(f"ZPL {n_zpl}-label job, text mode {mode:9s}:        {r_zpl[mode]:8.0f} labels/s")
    printing.configure(printing.PrintConfig())
    tspl = zpl[: n_zpl // 4]
    r_tspl = _rate(len(tspl), lambda: _drain(printing.iter_render(tspl, "tspl", SIZE)))
    print(f"TSPL job:                                         {r_tspl:8.0f} labels/s")

    lay_models = zpl[:2000]
    t = get_template(SIZE)
    r_lay = _rate(len(lay_models), lambda: [layout_label(m, t) for m in lay_models])
    print(f"(layout incl. Code128 + QR matrix only:           {r_lay:8.0f} labels/s)")

    base = list(sample_models(n_base, seed=5))
    widget_baseline(base[:2])  # warm-up
    r_base = _rate(n_base, lambda: widget_baseline(base), repeat=2)
    r_base1 = _rate(n_base, lambda: widget_baseline(base, one_document=False), repeat=2)
    print(f"baseline: reportlab canvas + QrCodeWidget, job:   {r_base:8.1f} labels/s")
    print(f"baseline: same, one canvas per label:             {r_base1:8.1f} labels/s")
    print(f"PDF job / baseline job ratio:                     {r_job / r_base:8.1f}x")
    print(f"PDF single / baseline single ratio:               {r_single / r_base1:8.1f}x")

    out = subprocess.run([sys.executable, __file__, "--child-memory", str(n_mem)], check=True,
                         capture_output=True, text=True).stdout.split()
    before, after, size, dt = float(out[0]), float(out[1]), int(out[2]), float(out[3])
    print(f"PDF {n_mem}-label job in a subprocess: peak RSS {after:.1f} MB "
          f"(after font load {before:.1f} MB), "
          f"{size / 1e6:.1f} MB of PDF at {n_mem / dt:.0f} labels/s")

    targets = (
        ("PDF job >= 300 labels/s", r_job >= 300),
        ("PDF job >= 20x the reportlab-widget baseline", r_job / r_base >= 20),
        ("ZPL (resident) >= 20000 labels/s", r_zpl["resident"] >= 20000),
        ("ZPL (glyphs, the default) >= 10000 labels/s", r_zpl["glyphs"] >= 10000),
        ("10k-label PDF job peak RSS < 200 MB", after < 200),
    )
    note = " (quick run: counts too small to judge)" if q else ""
    for name, met in targets:
        print(f"target {name:48s} {'MET' if met else 'NOT MET'}{note}")

if __name__ == "__main__":
    main()
