// Builds the courier handheld app into the Python package (courier_api/handheld/static/), where the service
// serves it from: one page bundle, one decoder worker, ZXing's .wasm, the page and its style sheet.
// Run `npm ci && npm run build` here, then commit the output (the service needs no Node.js to run).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "courier_api", "handheld", "static");
const require = createRequire(import.meta.url);

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const common = { bundle: true, minify: true, legalComments: "eof", charset: "utf8", target: ["es2020", "safari15", "chrome90"], logLevel: "warning" };
await build({ ...common, entryPoints: [join(here, "src", "app.js")], format: "esm", outfile: join(out, "app.js") });
await build({ ...common, entryPoints: [join(here, "src", "decoder-worker.js")], format: "iife",
              outfile: join(out, "decoder.js") });
// The .wasm of the zxing-wasm that barcode-detector pins (its JS glue is in decoder.js: they must match).
const wasm = require.resolve("zxing-wasm/reader/zxing_reader.wasm");
copyFileSync(wasm, join(out, "zxing_reader.wasm"));
for (const name of ["index.html", "app.css", "icon.svg"]) copyFileSync(join(here, "src", name), join(out, name));
console.log("built:", readdirSync(out).sort().join(", "));
