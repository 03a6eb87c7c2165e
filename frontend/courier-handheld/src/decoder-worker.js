// The QR decoder, in a dedicated worker so that decoding never blocks the page. The page posts a centre
// crop of the camera picture (an ImageBitmap, transferred) a few times a second; the worker answers with
// the QR payloads it found. The browser's own BarcodeDetector is used when it has one that reads QR codes
// (Chrome on Android, Safari 17+); otherwise the bundled ZXing WebAssembly build (barcode-detector's
// ponyfill on zxing-wasm), whose .wasm file this service serves next to this script.
import { BarcodeDetector as ZXingDetector, setZXingModuleOverrides } from "barcode-detector/ponyfill";

const WASM_FILE = "zxing_reader.wasm";

// Never the package's default (a CDN): the .wasm comes from this service, beside this worker's own URL.
setZXingModuleOverrides({
  locateFile: (path, prefix) => (path.endsWith(".wasm") ? new URL(WASM_FILE, self.location.href).href : prefix + path),
});

let detector = null;
let engine = "";

async function makeDetector() {
  if (typeof self.BarcodeDetector === "function") {
    try {
      const formats = await self.BarcodeDetector.getSupportedFormats();
      if (formats.includes("qr_code")) {
        engine = "native";
        return new self.BarcodeDetector({ formats: ["qr_code"] });
      }
    } catch {
      // A detector that cannot list its formats is not trusted: fall through to ZXing.
    }
  }
  engine = "zxing-wasm";
  return new ZXingDetector({ formats: ["qr_code"] });
}

self.onmessage = async (event) => {
  const { id, bitmap } = event.data;
  try {
    detector = detector || (await makeDetector());
    const found = await detector.detect(bitmap);
    const values = found.filter((b) => b.format === "qr_code").map((b) => b.rawValue);
    self.postMessage({ id, engine, values });
  } catch (err) {
    self.postMessage({ id, engine, values: [], error: String((err && err.message) || err) });
  } finally {
    if (bitmap && typeof bitmap.close === "function") bitmap.close();
  }
};
