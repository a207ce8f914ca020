// The browser SDK of the voice platform: one class, VoiceAgent. Plain ES module, no build
// step. Protocol: docs/protocol.md; the API is documented in docs/clients.md.
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
 * @property {import("./player.js").PlayerStats} playback
 */

// Close codes after which reconnecting cannot help (docs/protocol.md).
const FINAL_CLOSES = new Set([4000, 4001, 4003, 4008, 4009, 4011, 4013, 4029, 4030]);
const SERVER_RESTART = 4012;
const FRAME_BACKLOG = 20; // 2 s of 100 ms frames kept while the socket is down
const MAX_BUFFERED_BYTES = 64 * 1024;

export class VoiceAgent {
  /** @param {VoiceAgentOptions} options */
  constructor(options) {
    this.options = { autoResume: true, maxResumeAttempts: 6, ...options };
    /** @type {"idle"|"connecting"|"open"|"reconnecting"|"closed"} */
    this.state = "idle";
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {object | null} */
    this.agentInfo = null;
    this.resumeToken = null;
    this.ended = false;
    /** @type {WebSocket | null} */
    this.socket = null;
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
    this.listeners = new Map();
    this.turn = { userDoneAt: 0, firstReplyAt: 0, usage: null };
    this.lastVoiceAt = 0;
    this.resumeAttempt = 0;
    this.resumeTimer = null;
    /** @type {{code: number, reason: string} | null} */
    this.lastClose = null;
    /** @type {VoiceAgentStats} */
    this.stats = {
      framesSent: 0,
      secondsSent: 0,
      secondsCaptured: 0,
      framesDropped: 0,
      audioChunksReceived: 0,
      reconnects: 0,
      playback: null,
    };
  }

  /**
   * Listen to an event (same names as the callbacks without "on": "transcript", "tool", ...).
   * @param {string} type
   * @param {(detail: any) => void} listener
   */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  _emit(type, detail) {
    const callback = this.options["on" + type[0].toUpperCase() + type.slice(1)];
    const listeners = [...(callback ? [callback] : []), ...(this.listeners.get(type) || [])];
    for (const listener of listeners) {
      try {
        listener(detail);
      } catch (error) {
        // A bug in the page's handler must not stop the session's own handling.
        console.error(`VoiceAgent ${type} handler failed`, error);
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  /** The AudioContext (created on first use; call from a click so the browser allows it). */
  _audio() {
    if (!this.context || this.context.state === "closed") {
      this.context = new AudioContext({ latencyHint: "interactive" });
      this.player = new PcmPlayer(this.context, { jitterMs: this.options.jitterMs });
      this.stats.playback = this.player.stats;
    }
    if (this.context.state === "suspended") this.context.resume();
    return this.context;
  }

  async _url() {
    const o = this.options;
    if (o.url) {
      const url = o.url;
      o.url = undefined; // a token opens one session; reconnects use the resume token
      return url;
    }
    let answer;
    if (o.getToken) {
      answer = await o.getToken();
    } else if (o.tokenUrl) {
      const response = await fetch(o.tokenUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", ...(o.tokenHeaders || {}) },
      });
      if (!response.ok) throw new Error(`token request failed: HTTP ${response.status}`);
      answer = await response.json();
    } else {
      throw new Error("VoiceAgent needs url, tokenUrl or getToken");
    }
    const token = typeof answer === "string" ? answer : answer.token;
    if (!o.server && typeof answer === "object" && answer.websocket_url) {
      return answer.websocket_url;
    }
    return `${this._server()}?token=${encodeURIComponent(token)}`;
  }

  _server() {
    if (this.options.server) return this.options.server.split("?")[0];
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws/v1/live`;
  }

  /** Open the session. Resolves on `session.started`, rejects if it is refused. */
  async connect() {
    this.ended = false;
    this._audio();
    this._setState("connecting");
    let url;
    try {
      url = await this._url();
    } catch (error) {
      this._setState("closed");
      await this._release();
      throw error;
    }
    this._resumeBase = url.split("?")[0];
    return this._open(url);
  }

  _open(url) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      let started = false;
      socket.onmessage = (message) => {
        if (typeof message.data !== "string") {
          this._onAudio(message.data);
          return;
        }
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          return;
        }
        if (event.type === "session.started" && !started) {
          started = true;
          resolve(event);
        }
        this._onEvent(event);
      };
      socket.onclose = (close) => {
        if (this.socket !== socket) return;
        this.socket = null;
        this._onClose(close.code, close.reason);
        if (!started) {
          const error = new Error(`connection closed (${close.code})`);
          error.code = close.code;
          reject(error);
        }
      };
    });
  }

  _onEvent(event) {
    switch (event.type) {
      case "session.started": {
        const resumed = this.sessionId === event.session_id;
        this.sessionId = event.session_id;
        this.resumeToken = event.resume_token;
        this.agentInfo = event.agent;
        this.resumeAttempt = 0;
        this._setState("open");
        this._flushBacklog();
        if (resumed) {
          this._emit("resumed", { source: "client" });
        } else {
          this._emit("sessionStarted", { sessionId: event.session_id, agent: event.agent, resumed });
        }
        break;
      }
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
        // server_restart is the one ending that is not final: resume elsewhere at once.
        if (event.reason !== "server_restart") this.ended = true;
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

  _onAudio(data) {
    this.stats.audioChunksReceived += 1;
    this._replyStarted();
    if (this.player) this.player.enqueue(data);
  }

  _onClose(code, reason) {
    this.lastClose = { code, reason };
    const resumable =
      this.options.autoResume &&
      !this.ended &&
      this.resumeToken &&
      this.state !== "closed" &&
      // A 1000 without `session.ended` is not an ending either (a proxy or the browser
      // closed the socket); the server always says session.ended before its own 1000.
      (code === SERVER_RESTART || !FINAL_CLOSES.has(code));
    if (resumable && this.resumeAttempt < this.options.maxResumeAttempts) {
      this._scheduleResume(code === SERVER_RESTART ? 0 : null, `closed_${code}`);
      return;
    }
    const byUs = this.state === "closed"; // close() was called: it releases everything
    this._setState("closed");
    this._emit("close", { code, reason });
    if (!byUs) this._release();
  }

  _scheduleResume(fixedDelay, reason) {
    this.resumeAttempt += 1;
    // Full jitter: uniform in [0, min(8 s, 0.5 s * 2^attempt)], so clients dropped together
    // do not all come back in the same instant.
    const cap = Math.min(8000, 500 * 2 ** this.resumeAttempt);
    const delayMs = fixedDelay ?? Math.round(Math.random() * cap);
    this._setState("reconnecting");
    this._emit("reconnecting", { reason, source: "client", attempt: this.resumeAttempt, delayMs });
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = null;
      if (this.state !== "reconnecting") return;
      this.stats.reconnects += 1;
      const url = `${this._resumeBase || this._server()}?resume=${encodeURIComponent(this.resumeToken)}`;
      this._open(url).catch(() => {}); // a failed try ends in _onClose, which tries again
    }, delayMs);
  }

  /** Start the microphone: capture runs in an AudioWorklet, frames go to the socket. */
  async startMicrophone() {
    const context = this._audio();
    if (this.stream) return;
    const o = this.options;
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: o.echoCancellation ?? true,
        noiseSuppression: o.noiseSuppression ?? true,
        autoGainControl: o.autoGainControl ?? true,
      },
    });
    await context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    this.source = context.createMediaStreamSource(this.stream);
    this.worklet = new AudioWorkletNode(context, "voice-agent-capture", {
      processorOptions: { targetRate: 16000, frameMs: 100 },
    });
    this.worklet.port.onmessage = (message) => this._onFrame(message.data);
    this.source.connect(this.worklet);
    // Not connected to the speakers: a worklet with no output still runs while referenced.
  }

  /** Stop the microphone (the session stays open for text). */
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

  _send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      throw new Error("the session is not open");
    }
    this.socket.send(JSON.stringify(message));
  }

  /**
   * End the session: `close` to the server, then the microphone's tracks stopped, the
   * AudioContext closed and the socket closed. Safe to call more than once.
   */
  async close() {
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
    const socket = this.socket;
    this.ended = true;
    this._setState("closed");
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "close" }));
      // The server answers session.ended and closes; do not wait long for it.
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 1000);
        socket.addEventListener("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (socket && socket.readyState !== WebSocket.CLOSED) socket.close(1000);
    this.socket = null;
    await this._release();
  }

  async _release() {
    this.stopMicrophone();
    if (this.player) this.player.stopAll();
    const context = this.context;
    if (context && context.state !== "closed") await context.close();
  }

  /** For tests and the playground: a snapshot of what the SDK holds. */
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

  /** For tests: drop the connection as a network failure would (the SDK then resumes). */
  debugDropConnection() {
    if (this.socket) this.socket.close(4900, "test: connection dropped");
  }
}
