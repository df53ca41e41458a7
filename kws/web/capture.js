// AudioWorklet: the microphone's first channels mixed to mono, resampled to 16 kHz with a
// windowed-sinc low-pass, sent to the page as int16 frames of 100 ms (1600 samples).

const OUT_RATE = 16000;
const FRAME = 1600;
const HALF_TAPS = 16; // kernel half-width, in output samples

class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate;                  // input samples per output sample
    this.cutoff = Math.min(1, outRate / inRate) * 0.9; // of the input Nyquist frequency
    this.half = Math.ceil(HALF_TAPS * Math.max(1, this.step));
    this.buf = new Float32Array(this.half);        // zeros: the history before the start
    this.pos = this.half;                          // input position of the next output
  }

  kernel(x) {
    if (Math.abs(x) >= this.half) return 0;
    const c = this.cutoff;
    const t = Math.PI * c * x;
    const sinc = x === 0 ? 1 : Math.sin(t) / t;
    const w = 0.42 + 0.5 * Math.cos(Math.PI * x / this.half) + 0.08 * Math.cos(2 * Math.PI * x / this.half);
    return c * sinc * w;
  }

  process(input) {
    const buf = new Float32Array(this.buf.length + input.length);
    buf.set(this.buf);
    buf.set(input, this.buf.length);
    const out = [];
    while (Math.floor(this.pos) + this.half < buf.length) {
      const centre = Math.floor(this.pos);
      let sum = 0;
      for (let k = centre - this.half + 1; k <= centre + this.half; k++) {
        sum += buf[k] * this.kernel(this.pos - k);
      }
      out.push(sum);
      this.pos += this.step;
    }
    const keepFrom = Math.max(Math.floor(this.pos) - this.half, 0);
    this.buf = buf.slice(keepFrom);
    this.pos -= keepFrom;
    return out;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, OUT_RATE);
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    const mono = new Float32Array(n);
    for (const channel of input) {
      for (let i = 0; i < n; i++) mono[i] += channel[i] / input.length;
    }
    for (const v of this.resampler.process(mono)) {
      this.frame[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(v * 32768)));
      if (this.filled === FRAME) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("capture", CaptureProcessor);
