// The browser SDK of the voice platform: one class, VoiceAgent (its connection, resume and
// close-code policy are connection.js and close-codes.js). Plain ES modules, no build step.
// Protocol: docs/protocol.md; the API is documented in docs/clients.md#browser-sdk.
import { Connection } from "./connection.js";
import { PcmPlayer } from "./player.js";

/**
 * @typedef {object} TokenResponse
 * @property {string} token a client token (`ct_...`)
 * @property {string} [websocket_url] `ws(s)://.../ws/v1/live?token=...`
 */

/**
 * @typedef {object} VoiceAgentOptions
 * @property {string} [url] a complete WebSocket URL with its token (single use)
 * @property {string} [tokenUrl] your backend's endpoint: POST, answers {@link TokenResponse}
 * @property {() => Promise<TokenResponse | string>} [getToken] or fetch the token yourself
 * @property {Record<string, string>} [tokenHeaders] extra headers for the `tokenUrl` POST
 * @property {string} [server] `wss://platform.example/ws/v1/live` (default: the token
 *   response's `websocket_url`, else this page's host)
 * @property {boolean} [echoCancellation] microphone processing (default true)
 * @property {boolean} [noiseSuppression] (default true)
 * @property {boolean} [autoGainControl] (default true)
 * @property {number} [jitterMs] playback jitter buffer (default 80)
 * @property {boolean} [autoResume] resume after a lost connection (default true)
 * @property {number} [maxResumeAttempts] (default 6)
 * @property {boolean} [reportPlayback] tell the server when each reply starts to play
 *   (`playback.started`: voice-to-voice latency as the user hears it; default true)
 * @property {(state: string) => void} [onState] idle, connecting, open, reconnecting, closed
 * @property {(e: {sessionId: string, agent: object, resumed: boolean}) => void} [onSessionStarted]
 * @property {(e: {role: "user" | "model", text: string}) => void} [onTranscript]
 * @property {(e: {text: string}) => void} [onText] text reply pieces (TEXT agents)
 * @property {(e: {phase: "started" | "finished", call_id: string, name: string, status?: string}) => void} [onTool]
 * @property {(e: {prompt_tokens: number, response_tokens: number, total_tokens: number, context_limit: number}) => void} [onUsage]
 * @property {(e: {latencyMs: number | null, usage: object | null}) => void} [onTurnComplete]
 * @property {() => void} [onInterrupted] the user barged in: playback already stopped
 * @property {(e: {code: string, message: string}) => void} [onWarning]
 * @property {(e: {code: string, message: string, retry_after?: number}) => void} [onError]
 * @property {(e: {reason: string, source: "server" | "client", attempt?: number, delayMs?: number}) => void} [onReconnecting]
 * @property {(e: {source: "server" | "client", fresh_context?: boolean}) => void} [onResumed]
 * @property {(e: {reason: string}) => void} [onSessionEnded]
 * @property {(e: {code: number, reason: string}) => void} [onClose] the session is over
 * @property {(rms: number) => void} [onLevel] microphone level, 0 to 1, every frame
 */

/**
 * @typedef {object} VoiceAgentStats
 * @property {number} framesSent audio frames sent
 * @property {number} secondsSent seconds of 16 kHz audio sent
 * @property {number} secondsCaptured seconds of 16 kHz audio the worklet produced
 * @property {number} framesDropped frames dropped (socket down over 2 s, or backed up)
 * @property {number} audioChunksReceived
 * @property {number} reconnects client-side reconnects (resumes with the resume token)
 * @property {number} playbackReports `playback.started` reports sent (one per reply played)
 * @property {import("./player.js").PlayerStats} playback
 */

const FRAME_BACKLOG = 20; // 2 s of 100 ms frames kept while the socket is down
const MAX_BUFFERED_BYTES = 64 * 1024;

/**
 * A conversation with an agent. The connection (token, socket, close codes, resume) is
 * the base class in connection.js: `connect()`, `close()`, `on()`, `state`, `sessionId`,
 * `debugDropConnection()` are documented there and in docs/clients.md#browser-sdk.
 */
export class VoiceAgent extends Connection {
  /** @param {VoiceAgentOptions} options */
  constructor(options) {
    super(options);
    /** @type {AudioContext | null} */
    this.context = null;
    /** @type {PcmPlayer | null} */
    this.player = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    this.worklet = null;
    this.source = null;
    /** @type {ArrayBuffer[]} */
    this.backlog = [];
    this.turn = { userDoneAt: 0, firstReplyAt: 0, usage: null };
    this.lastVoiceAt = 0;
    /** @type {VoiceAgentStats} */
    this.stats = {
      framesSent: 0,
      secondsSent: 0,
      secondsCaptured: 0,
      framesDropped: 0,
      audioChunksReceived: 0,
      reconnects: 0,
      playbackReports: 0,
      playback: null,
    };
  }

  /** The AudioContext (created on first use; call from a click so the browser allows it). */
  _audio() {
    if (!this.context || this.context.state === "closed") {
      this.context = new AudioContext({ latencyHint: "interactive" });
      this.player = new PcmPlayer(this.context, {
        jitterMs: this.options.jitterMs,
        onStarted: () => this._playbackStarted(),
      });
      this.stats.playback = this.player.stats;
    }
    if (this.context.state === "suspended") this.context.resume();
    return this.context;
  }

  _beforeConnect() {
    this._audio(); // from the click that called connect(): browsers start audio only then
  }

  _sessionStarted(event, resumed) {
    this._flushBacklog();
    // A new connection: the server times its turns afresh, so the next audio that plays
    // is reported again (docs/protocol.md, playback reports).
    if (this.player) this.player.endOfReply();
    if (resumed) {
      this._emit("resumed", { source: "client" });
    } else {
      this._emit("sessionStarted", { sessionId: event.session_id, agent: event.agent, resumed });
    }
  }

  _onEvent(event) {
    switch (event.type) {
      case "transcript.input":
        this._emit("transcript", { role: "user", text: event.text });
        break;
      case "transcript.output":
        this._replyStarted();
        this._emit("transcript", { role: "model", text: event.text });
        break;
      case "text":
        this._replyStarted();
        this._emit("text", { text: event.text });
        break;
      case "interrupted":
        // Stop first, tell after: the user is speaking, nothing of the old reply may play.
        if (this.player) this.player.stopAll();
        this._emit("interrupted", {});
        break;
      case "turn_complete": {
        if (this.player) this.player.endOfReply();
        const { userDoneAt, firstReplyAt, usage } = this.turn;
        const latencyMs = userDoneAt && firstReplyAt ? Math.max(0, firstReplyAt - userDoneAt) : null;
        this._emit("turnComplete", { latencyMs, usage });
        this.turn = { userDoneAt: 0, firstReplyAt: 0, usage: null };
        break;
      }
      case "usage":
        this.turn.usage = event;
        this._emit("usage", event);
        break;
      case "tool.started":
      case "tool.finished":
        this._emit("tool", { phase: event.type.slice(5), ...event });
        break;
      case "warning":
        this._emit("warning", event);
        break;
      case "error":
        this._emit("error", event);
        break;
      case "session.reconnecting":
        this._emit("reconnecting", { reason: event.reason, source: "server" });
        break;
      case "session.resumed":
        this._emit("resumed", { source: "server", fresh_context: event.fresh_context });
        break;
      case "session.ended":
        this._emit("sessionEnded", { reason: event.reason });
        break;
      default:
        break;
    }
  }

  _replyStarted() {
    if (!this.turn.firstReplyAt) {
      this.turn.firstReplyAt = performance.now();
      // The end of the user's turn, as far as the page can tell: the last loud frame (or the
      // text just sent).
      if (!this.turn.userDoneAt) this.turn.userDoneAt = this.lastVoiceAt;
    }
  }

  /** A reply's first audio began to play: `playback.started`, once per reply (player.js). */
  _playbackStarted() {
    if (this.options.reportPlayback === false) return;
    const socket = this.socket;
    // Not on a socket that is down or not started: a report held until a reconnect would
    // time the wrong moment.
    if (!socket || socket.readyState !== WebSocket.OPEN || this.state !== "open") return;
    socket.send(JSON.stringify({ type: "playback.started" }));
    this.stats.playbackReports += 1;
  }

  _onAudio(data) {
    this.stats.audioChunksReceived += 1;
    this._replyStarted();
    if (this.player) this.player.enqueue(data);
  }

  /**
   * Start the microphone: capture runs in an AudioWorklet, frames go to the socket.
   * Rejects once the session is closed (`close()` called, or the session is over), also
   * when that happens while the browser is still asking for the microphone.
   * @returns {Promise<void>}
   */
  async startMicrophone() {
    this._refuseIfClosed();
    const context = this._audio();
    if (this.stream) return;
    const o = this.options;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: o.echoCancellation ?? true,
        noiseSuppression: o.noiseSuppression ?? true,
        autoGainControl: o.autoGainControl ?? true,
      },
    });
    if (this.state === "closed" || this.stream) {
      for (const track of stream.getTracks()) track.stop();
      this._refuseIfClosed();
      return; // a second call won the race
    }
    this.stream = stream;
    await context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    if (this.state === "closed" || this.stream !== stream) {
      if (this.stream === stream) this.stopMicrophone();
      this._refuseIfClosed();
      return;
    }
    this.source = context.createMediaStreamSource(stream);
    this.worklet = new AudioWorkletNode(context, "voice-agent-capture", {
      processorOptions: { targetRate: 16000, frameMs: 100 },
    });
    this.worklet.port.onmessage = (message) => this._onFrame(message.data);
    this.source.connect(this.worklet);
    // Not connected to the speakers: a worklet with no output still runs while referenced.
  }

  _refuseIfClosed() {
    if (this.state === "closed") throw new Error("the session is closed");
  }

  /**
   * Stop the microphone (the session stays open for text).
   * @returns {void}
   */
  stopMicrophone() {
    if (this.source) this.source.disconnect();
    if (this.worklet) {
      this.worklet.port.onmessage = null;
      this.worklet.disconnect();
    }
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.source = null;
    this.worklet = null;
    this.stream = null;
  }

  _onFrame(frame) {
    if (!frame || frame.type !== "frame") return;
    const seconds = frame.pcm.byteLength / 32000;
    this.stats.secondsCaptured += seconds;
    if (frame.level > 0.01) this.lastVoiceAt = performance.now();
    this._emit("level", frame.level);
    const socket = this.socket;
    if (socket && socket.readyState === WebSocket.OPEN && this.state === "open") {
      if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
        this.stats.framesDropped += 1; // the network is not keeping up: drop, do not queue
        return;
      }
      socket.send(frame.pcm);
      this.stats.framesSent += 1;
      this.stats.secondsSent += seconds;
    } else if (this.state === "connecting" || this.state === "reconnecting") {
      this.backlog.push(frame.pcm);
      if (this.backlog.length > FRAME_BACKLOG) {
        this.backlog.shift();
        this.stats.framesDropped += 1;
      }
    }
  }

  _flushBacklog() {
    const socket = this.socket;
    while (this.backlog.length && socket && socket.readyState === WebSocket.OPEN) {
      const pcm = this.backlog.shift();
      socket.send(pcm);
      this.stats.framesSent += 1;
      this.stats.secondsSent += pcm.byteLength / 32000;
    }
  }

  /**
   * Send a user text turn.
   * @param {string} text
   */
  sendText(text) {
    this._send({ type: "text", text });
    this.turn.userDoneAt = performance.now();
    this.turn.firstReplyAt = 0;
  }

  async _release() {
    this.stopMicrophone();
    if (this.player) this.player.stopAll();
    const context = this.context;
    if (context && context.state !== "closed") await context.close();
  }

  /**
   * For tests and the playground: a snapshot of what the SDK holds.
   * @returns {object}
   */
  debugState() {
    const player = this.player;
    return {
      state: this.state,
      sessionId: this.sessionId,
      audioContext: this.context ? this.context.state : null,
      contextTime: this.context ? this.context.currentTime : null,
      tracks: this.stream ? this.stream.getTracks().map((t) => t.readyState) : [],
      socket: this.socket ? this.socket.readyState : null,
      queuedBuffers: player ? player.queuedBuffers : 0,
      queuedSeconds: player ? player.queuedSeconds : 0,
      lastClose: this.lastClose,
      stats: JSON.parse(JSON.stringify(this.stats)),
    };
  }
}
