// AudioWorkletProcessor "voice-agent-capture": the microphone's audio, downmixed to mono,
// resampled to 16 kHz and converted to PCM16 here on the audio thread (never on the page's
// main thread), posted as ~100 ms frames (transferable ArrayBuffers).
import { StreamResampler, floatToPcm16 } from "./pcm.js";

class CaptureProcessor extends AudioWorkletProcessor {
  /** @param {{processorOptions?: {targetRate?: number, frameMs?: number}}} options */
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.frameSamples = Math.round((this.targetRate * (opts.frameMs || 100)) / 1000);
    // `sampleRate` is the AudioContext's rate, a global of the worklet scope.
    this.resampler = new StreamResampler(sampleRate, this.targetRate);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
    this.seq = 0;
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "flush") this.post(true);
    };
  }

  /** @param {Float32Array[][]} inputs */
  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // nothing connected (yet)
    const n = channels[0].length;
    if (!this.mono || this.mono.length !== n) this.mono = new Float32Array(n);
    const mono = this.mono;
    mono.set(channels[0]);
    for (let c = 1; c < channels.length; c++) {
      const channel = channels[c];
      for (let i = 0; i < n; i++) mono[i] += channel[i];
    }
    if (channels.length > 1) {
      for (let i = 0; i < n; i++) mono[i] /= channels.length;
    }
    const resampled = this.resampler.process(mono);
    for (let i = 0; i < resampled.length; i++) {
      const v = floatToPcm16(resampled[i]);
      this.frame[this.filled++] = v;
      this.sumSquares += v * v;
      if (this.filled === this.frameSamples) this.post(false);
    }
    return true;
  }

  /** @param {boolean} partial post what is there even if the frame is not full */
  post(partial) {
    if (this.filled === 0) return;
    const samples = partial ? this.frame.slice(0, this.filled) : this.frame;
    const level = Math.sqrt(this.sumSquares / this.filled) / 32768;
    this.port.postMessage(
      { type: "frame", seq: this.seq++, pcm: samples.buffer, level, partial },
      [samples.buffer],
    );
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
  }
}

registerProcessor("voice-agent-capture", CaptureProcessor);
