// Playback of the model's 24 kHz PCM16 audio on the AudioContext clock: each chunk starts
// exactly where the previous one ends (no gaps, no overlaps), after a small jitter buffer
// at the start of a reply; `stopAll()` silences every queued and playing chunk at once.
// `onStarted` is called once per reply, when its first chunk actually begins to play.
import { pcm16ToFloat32 } from "./pcm.js";

/**
 * @typedef {object} PlayerStats
 * @property {number} buffersScheduled chunks scheduled since the player was made
 * @property {number} gaps underruns inside a reply: a chunk arrived after the previous ended
 * @property {number} gapSeconds total silence those underruns caused
 * @property {number} secondsScheduled audio scheduled, in seconds
 * @property {Array<[number, number]>} schedule [start, end] of recent chunks (context time)
 * @property {Array<{start: number, end: number, buffers: number, gaps: number, startedAt?: number}>} runs
 *   one entry per reply played: from its first chunk's start to its last chunk's end;
 *   `startedAt`: the context time `onStarted` was called (the reply began to play)
 * @property {Array<{at: number, stopped: number, queuedSeconds: number}>} stops
 */

export class PcmPlayer {
  /**
   * @param {AudioContext} context
   * @param {{sampleRate?: number, jitterMs?: number, onStarted?: () => void}} [options]
   *   `onStarted`: the first chunk of a reply began to play (its start time on the
   *   AudioContext clock has passed, plus the output latency the browser reports)
   */
  constructor(context, options = {}) {
    this.context = context;
    this.sampleRate = options.sampleRate || 24000;
    // Long enough to ride out network jitter at the start of a reply, short enough not to
    // be heard as latency.
    this.jitter = (options.jitterMs ?? 80) / 1000;
    /** @type {Set<AudioBufferSourceNode>} */
    this.active = new Set();
    this.output = this._newOutput();
    this.nextTime = 0;
    this.inRun = false; // a reply is being played: a late chunk is a gap, not a new start
    this.onStarted = options.onStarted || null;
    /** @type {Set<number>} timers waiting for a reply's first chunk to play */
    this.startWatches = new Set();
    /** @type {PlayerStats} */
    this.stats = {
      buffersScheduled: 0,
      gaps: 0,
      gapSeconds: 0,
      secondsScheduled: 0,
      schedule: [],
      runs: [],
      stops: [],
    };
  }

  _newOutput() {
    const gain = this.context.createGain();
    gain.connect(this.context.destination);
    return gain;
  }

  /** Seconds of audio scheduled and not yet played. */
  get queuedSeconds() {
    return this.active.size ? Math.max(0, this.nextTime - this.context.currentTime) : 0;
  }

  /** Chunks scheduled or playing, not yet ended or stopped. */
  get queuedBuffers() {
    return this.active.size;
  }

  /** @param {ArrayBuffer} pcm little-endian PCM16 at `sampleRate` */
  enqueue(pcm) {
    if (pcm.byteLength < 2) return;
    const samples = pcm16ToFloat32(pcm);
    const buffer = this.context.createBuffer(1, samples.length, this.sampleRate);
    buffer.copyToChannel(samples, 0);
    const now = this.context.currentTime;
    if (!this.inRun) {
      // A new reply: after the jitter buffer, and never over the end of one still playing.
      this.nextTime = Math.max(this.nextTime, now + this.jitter);
      this.inRun = true;
      this.stats.runs.push({ start: this.nextTime, end: this.nextTime, buffers: 0, gaps: 0 });
      if (this.stats.runs.length > 200) this.stats.runs.splice(0, 100);
      this._watchStart(this.stats.runs[this.stats.runs.length - 1]);
    } else if (this.nextTime < now + 0.005) {
      // Underrun: the previous chunk has (nearly) finished; start again after the buffer.
      const restart = now + this.jitter;
      this.stats.gaps += 1;
      this.stats.gapSeconds += restart - this.nextTime;
      this.stats.runs[this.stats.runs.length - 1].gaps += 1;
      this.nextTime = restart;
    }
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    source.onended = () => this.active.delete(source);
    source.start(this.nextTime);
    this.active.add(source);
    const start = this.nextTime;
    this.nextTime = start + buffer.duration;
    this.stats.buffersScheduled += 1;
    this.stats.secondsScheduled += buffer.duration;
    this.stats.schedule.push([start, this.nextTime]);
    const run = this.stats.runs[this.stats.runs.length - 1];
    run.end = this.nextTime;
    run.buffers += 1;
    if (this.stats.schedule.length > 2000) this.stats.schedule.splice(0, 1000);
  }

  /**
   * Call `onStarted` once the run's first chunk is playing: not when it is scheduled, nor
   * while the context is suspended (a page without a user gesture yet). A timer, checked
   * against the context's clock when it fires; `stopAll()` cancels it (nothing was heard).
   */
  _watchStart(run) {
    if (!this.onStarted) return;
    const at = run.start + (this.context.outputLatency || 0);
    const check = (timer) => {
      this.startWatches.delete(timer);
      const context = this.context;
      if (context.state === "closed") return;
      const left = at - context.currentTime;
      if (context.state !== "running") {
        watch(50); // its clock stands still: look again later
        return;
      }
      if (left > 0.001) {
        watch(Math.max(5, left * 1000));
        return;
      }
      run.startedAt = context.currentTime;
      this.onStarted();
    };
    const watch = (ms) => {
      const timer = setTimeout(() => check(timer), ms);
      this.startWatches.add(timer);
    };
    watch(Math.max(0, (at - this.context.currentTime) * 1000));
  }

  /** The reply is complete: the next chunk starts a new reply (after the jitter buffer). */
  endOfReply() {
    this.inRun = false;
  }

  /** Stop every queued and playing chunk now (barge-in), and forget the reply. */
  stopAll() {
    const stopped = this.active.size;
    const queuedSeconds = this.queuedSeconds;
    for (const timer of this.startWatches) clearTimeout(timer);
    this.startWatches.clear();
    for (const source of this.active) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // never started: nothing to stop
      }
      source.disconnect();
    }
    this.active.clear();
    // A fresh output node, so not even a render quantum of the old chunks gets through.
    this.output.disconnect();
    this.output = this._newOutput();
    this.inRun = false;
    this.nextTime = this.context.currentTime;
    this.stats.stops.push({ at: this.context.currentTime, stopped, queuedSeconds });
    return stopped;
  }
}
