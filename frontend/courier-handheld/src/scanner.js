// The camera: the rear camera into a <video>, and every DECODE_EVERY_MS the centre square of the picture
// (what the aiming square shows) sent to the decoder worker as a transferred ImageBitmap. One crop at a time
// is in flight, so a slow decoder is never queued up behind; not every frame is decoded, only a few a second.
// The camera stops as soon as a QR payload is found (or on stop()).

const DECODE_EVERY_MS = 250;
const CROP = 0.6; // of the shorter side: the aiming square in app.css has the same share of the video's width

export class Scanner {
  constructor(video, onToken, onProblem) {
    this.video = video;
    this.onToken = onToken;
    this.onProblem = onProblem;
    this.worker = null;
    this.stream = null;
    this.timer = 0;
    this.busy = false;
    this.seq = 0;
    this.engine = "";
  }

  get running() {
    return this.stream !== null;
  }

  async start() {
    if (this.running) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("no-camera-api");
    }
    if (!this.worker) {
      this.worker = new Worker(new URL("decoder.js", import.meta.url));
      this.worker.onmessage = (event) => this.answered(event.data);
      this.worker.onerror = () => this.onProblem("decoder");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: false, video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    this.video.srcObject = this.stream;
    await this.video.play();
    this.timer = setInterval(() => this.grab(), DECODE_EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
    this.busy = false;
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.video.srcObject = null;
  }

  async grab() {
    const { videoWidth: w, videoHeight: h } = this.video;
    if (this.busy || !this.running || !w || !h) return;
    const side = Math.floor(Math.min(w, h) * CROP);
    this.busy = true;
    try {
      const bitmap = await createImageBitmap(this.video, Math.floor((w - side) / 2), Math.floor((h - side) / 2),
                                             side, side);
      if (!this.running) {
        bitmap.close();
        return;
      }
      this.seq += 1;
      this.worker.postMessage({ id: this.seq, bitmap }, [bitmap]);
    } catch {
      this.busy = false; // the video had no picture yet: try again on the next tick
    }
  }

  answered({ engine, values, error }) {
    this.busy = false;
    this.engine = engine || this.engine;
    if (error) {
      this.stop();
      this.onProblem("decoder");
      return;
    }
    const token = values.find((v) => typeof v === "string" && v.length > 0);
    if (token && this.running) {
      this.stop();
      this.onToken(token);
    }
  }
}
