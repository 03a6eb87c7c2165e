"""How fast the courier app's QR decoder reads a label in Debian's chromium (the ZXing WebAssembly path: desktop
Linux Chromium has no BarcodeDetector), under the app's own headers and CSP.

The app's blueprint is served on a free localhost port; the page's decoder worker (``/app/courier/decoder.js``)
is handed the centre crop the app sends (a 432x432 square: 60 % of a 720-line picture) of a sample label
rendered by the service's label code, as an ImageBitmap, one at a time. Printed: the first decode (fetching and
compiling the .wasm included) and the per-crop decode time over the next N crops (p50, p95, max), against the
app's decode interval of 250 ms (target: p95 below half of it, so decoding never falls behind).

    python bench/handheld_decode.py [--crops 40]
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zxingcpp  # noqa: E402
from flask import Flask  # noqa: E402
from PIL import Image  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

import printing  # noqa: E402
from courier_api import handheld  # noqa: E402
from printing.samples import sample_model  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
INTERVAL_MS = 250  # scanner.js DECODE_EVERY_MS
CROP = 432  # scanner.js CROP (0.6) of a 1280x720 picture's 720 lines
QR_PX = 300  # how wide the QR is in that picture (as the browser test films it)

DECODE = """async ({png, crops}) => {
  const worker = new Worker(new URL("decoder.js", location.href));
  // Not a data: URL (connect-src 'self' refuses it): the PNG's bytes straight into a Blob.
  const blob = new Blob([Uint8Array.from(atob(png), (c) => c.charCodeAt(0))], {type: "image/png"});
  const once = () => new Promise(async (resolve) => {
    const bitmap = await createImageBitmap(blob);
    const t0 = performance.now();
    worker.onmessage = (e) => resolve({ms: performance.now() - t0, values: e.data.values, engine: e.data.engine,
                                       error: e.data.error || null});
    worker.postMessage({id: 1, bitmap}, [bitmap]);
  });
  const first = await once();
  const rest = [];
  for (let i = 0; i < crops; i++) rest.push(await once());
  worker.terminate();
  return {first, rest};
}"""


def _crop() -> tuple[bytes, str]:
    """The centre crop of a filmed sample label (PNG), and the token its QR holds."""
    label = Image.open(io.BytesIO(printing.render_label(sample_model(), "png", "100x180"))).convert("L")
    (qr,) = [r for r in zxingcpp.read_barcodes(label) if r.format == zxingcpp.BarcodeFormat.QRCode]
    p = qr.position
    xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
    ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
    scale = QR_PX / (max(xs) - min(xs))
    label = label.resize((round(label.width * scale), round(label.height * scale)), Image.Resampling.LANCZOS)
    cx, cy = (min(xs) + max(xs)) / 2 * scale, (min(ys) + max(ys)) / 2 * scale
    box = (round(cx - CROP / 2), round(cy - CROP / 2), round(cx + CROP / 2), round(cy + CROP / 2))
    out = io.BytesIO()
    label.crop(box).convert("RGB").save(out, "PNG")
    return out.getvalue(), qr.text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crops", type=int, default=40, help="timed decodes after the first (default 40)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request lines in the figures
    app = Flask("handheld_bench")
    handheld.install(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    png, token = _crop()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}{handheld.PREFIX}")
            result: dict[str, Any] = page.evaluate(DECODE, {"png": base64.b64encode(png).decode(),
                                                            "crops": args.crops})
            browser.close()
    finally:
        server.shutdown()
        thread.join(10)
    runs = [result["first"], *result["rest"]]
    read = sum(1 for r in runs if r["values"] == [token])
    times = sorted(r["ms"] for r in result["rest"])
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"decoder engine: {result['first']['engine']}  crop {CROP}x{CROP} px, QR {QR_PX} px wide")
    print(f"crops read correctly: {read}/{len(runs)}")
    print(f"first decode (fetch + compile .wasm + decode): {result['first']['ms']:7.1f} ms")
    print(f"per-crop decode over {len(times)} crops: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {times[-1]:6.1f} ms")
    target = INTERVAL_MS / 2
    met = p95 < target and read == len(runs)
    print(f"target: every crop read, p95 < {target:.0f} ms (half the {INTERVAL_MS} ms interval): "
          f"{'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
