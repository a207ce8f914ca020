// PCM conversions and a streaming resampler, shared by the capture worklet and the page.
// The arithmetic matches voice_client/audio.py (float32_to_pcm16, pcm16_to_float32), and a
// test (tests/browser/test_worklet_conversions.py) compares the worklet's output with it.

/**
 * One float sample in [-1, 1] as a 16-bit integer: clipped, positive values times 32767,
 * negative ones times 32768, truncated toward zero; NaN is 0.
 * @param {number} x
 * @returns {number}
 */
export function floatToPcm16(x) {
  if (Number.isNaN(x)) return 0;
  const clipped = x > 1 ? 1 : x < -1 ? -1 : x;
  return Math.trunc(clipped > 0 ? clipped * 32767 : clipped * 32768);
}

/**
 * Little-endian PCM16 bytes as float samples (positive / 32767, negative / 32768).
 * @param {ArrayBuffer} buffer
 * @returns {Float32Array}
 */
export function pcm16ToFloat32(buffer) {
  const view = new DataView(buffer);
  const n = buffer.byteLength >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = view.getInt16(2 * i, true);
    out[i] = v > 0 ? v / 32767 : v / 32768;
  }
  return out;
}

/** Half-width of the anti-aliasing filter, in input samples (65 taps). */
const HALF_TAPS = 32;

/**
 * Windowed-sinc (Blackman) low-pass, normalised to unit gain at DC.
 * @param {number} cutoff cycles per input sample (0 to 0.5)
 * @returns {Float64Array}
 */
function lowPass(cutoff) {
  const taps = 2 * HALF_TAPS + 1;
  const h = new Float64Array(taps);
  let sum = 0;
  for (let n = 0; n < taps; n++) {
    const m = n - HALF_TAPS;
    const sinc = m === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * m) / (Math.PI * m);
    const w =
      0.42 - 0.5 * Math.cos((2 * Math.PI * n) / (taps - 1)) +
      0.08 * Math.cos((4 * Math.PI * n) / (taps - 1));
    h[n] = sinc * w;
    sum += h[n];
  }
  for (let n = 0; n < taps; n++) h[n] /= sum;
  return h;
}

/**
 * A streaming resampler: a linear-phase low-pass (when going down) evaluated at each output
 * instant, with linear interpolation between input positions for non-integer ratios.
 * Output sample k is the input at time k / toRate (the filter's delay is compensated by
 * waiting for HALF_TAPS samples of look-ahead, not by shifting the signal).
 */
export class StreamResampler {
  /**
   * @param {number} fromRate
   * @param {number} toRate
   */
  constructor(fromRate, toRate) {
    this.fromRate = Math.round(fromRate);
    this.toRate = Math.round(toRate);
    this.passThrough = this.fromRate === this.toRate;
    // Cut below the output's Nyquist frequency, with room for the filter's transition band.
    const cutoff = (0.5 * Math.min(this.fromRate, this.toRate)) / this.fromRate;
    this.taps = lowPass(cutoff * 0.9);
    // Input samples from absolute index `base` on; it starts with HALF_TAPS zeros so the
    // first outputs have their left context.
    this.base = -HALF_TAPS;
    /** @type {Float32Array} */
    this.buf = new Float32Array(HALF_TAPS);
    this.k = 0; // index of the next output sample
  }

  /**
   * @param {Float32Array} input
   * @returns {Float32Array} the new output samples (a view, valid until the next call)
   */
  process(input) {
    if (this.passThrough) return input.slice();
    const joined = new Float32Array(this.buf.length + input.length);
    joined.set(this.buf);
    joined.set(input, this.buf.length);
    this.buf = joined;
    const end = this.base + joined.length; // one past the last input index we hold
    // Reused between calls: the audio thread should not make garbage 375 times a second.
    const most = Math.ceil((input.length * this.toRate) / this.fromRate) + 2;
    if (!this.out || this.out.length < most) this.out = new Float32Array(most);
    const out = this.out;
    let count = 0;
    for (;;) {
      // Exact rational position: integer part and fraction of k * from / to.
      const num = this.k * this.fromRate;
      const i = Math.floor(num / this.toRate);
      const frac = (num - i * this.toRate) / this.toRate;
      const need = frac === 0 ? i + HALF_TAPS : i + 1 + HALF_TAPS;
      if (need >= end) break;
      const a = this._filtered(i);
      out[count++] = frac === 0 ? a : a + (this._filtered(i + 1) - a) * frac;
      this.k++;
    }
    // Keep only what the next outputs can still reach.
    const nextI = Math.floor((this.k * this.fromRate) / this.toRate);
    const keepFrom = nextI - HALF_TAPS;
    if (keepFrom > this.base) {
      this.buf = this.buf.slice(keepFrom - this.base);
      this.base = keepFrom;
    }
    return out.subarray(0, count);
  }

  /** @param {number} i absolute input index @returns {number} */
  _filtered(i) {
    const h = this.taps;
    const start = i - HALF_TAPS - this.base;
    let acc = 0;
    for (let n = 0; n < h.length; n++) {
      const j = start + n;
      if (j >= 0) acc += h[n] * this.buf[j];
    }
    return acc;
  }
}
