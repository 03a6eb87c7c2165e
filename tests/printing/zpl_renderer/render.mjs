// Test-only ZPL "printer": reads one JSON request per line on stdin,
//   {"zpl": "<job>", "width_mm": 100, "height_mm": 150, "dpmm": 8}
// and answers one JSON line per request on stdout: {"pngs": ["<base64 PNG>", ...]} (one per ^XA..^XZ
// label, in order) or {"error": "<message>"}. One long-lived process, because loading the renderer's
// WebAssembly (~8 MB) takes a second or two.
import { ready } from "zpl-renderer-js";
import readline from "node:readline";

const { api } = await ready;
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let answer;
  try {
    const req = JSON.parse(line);
    const pngs = await api.zplToBase64MultipleAsync(req.zpl, req.width_mm, req.height_mm, req.dpmm ?? 8);
    answer = { pngs };
  } catch (err) {
    answer = { error: String(err && err.message ? err.message : err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
