// The connection half of the browser SDK: the token, the socket, retrying and resuming
// (what each close code calls for is close-codes.js). VoiceAgent (voice-agent.js) extends
// this class with audio and the page's events. Protocol: docs/protocol.md.
import { FINAL, closeAction } from "./close-codes.js";

const NORMAL = 1000;
const DROPPED = 1006;
const CLOSE_WAIT_MS = 1000; // close(): the server's session.ended and close
const CLOSE_START_WAIT_MS = 3000; // close(): a connection still starting, to end it cleanly

/** Full jitter: uniform in [0, min(8 s, 0.5 s × 2^attempt)]. */
function backoffMs(attempt) {
  return Math.round(Math.random() * Math.min(8000, 500 * 2 ** attempt));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function closedError(code, message) {
  const error = new Error(message);
  error.code = code;
  return error;
}

/**
 * One socket and what happened on it.
 * @typedef {object} Attempt
 * @property {WebSocket} socket
 * @property {string} url
 * @property {boolean} started `session.started` came
 * @property {number | null} retryAfter from an `error` event
 * @property {Promise<void>} ready settles on `session.started` or the close
 * @property {Promise<void>} closed settles on the close
 */

export class Connection {
  /** @param {import("./voice-agent.js").VoiceAgentOptions} options */
  constructor(options) {
    this.options = { autoResume: true, maxResumeAttempts: 6, ...options };
    /** @type {"idle"|"connecting"|"open"|"reconnecting"|"closed"} */
    this.state = "idle";
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {object | null} */
    this.agentInfo = null;
    /** @type {string | null} */
    this.resumeToken = null;
    this.ended = false;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.listeners = new Map();
    this.resumeAttempt = 0;
    this.resumeTimer = null;
    /** @type {{code: number, reason: string} | null} */
    this.lastClose = null;
    this._generation = 0; // bumped by connect() and close(): a stale await gives up
    this._pending = null; // connect()'s promise, settled by session.started or the end
    this._finished = false;
    this._closing = null;
    this._released = Promise.resolve();
    /** @type {Attempt | null} */
    this._attempt = null;
    this._dropped = null;
  }

  /**
   * Listen to an event (same names as the callbacks without "on": "transcript", "tool", ...).
   * @param {string} type
   * @param {(detail: any) => void} listener
   * @returns {() => void} unsubscribes
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

  _resumeUrl() {
    return `${this._resumeBase || this._server()}?resume=${encodeURIComponent(this.resumeToken)}`;
  }

  /**
   * Open the session. Resolves with `session.started`; rejects when it is refused
   * (`error.code` is the close code) or when `close()` is called first (`error.code` 1000).
   * @returns {Promise<object>}
   */
  async connect() {
    if (this.state === "connecting" || this.state === "open" || this.state === "reconnecting") {
      throw new Error(`the session is already ${this.state}`);
    }
    const generation = ++this._generation;
    this.ended = false;
    this.resumeToken = null;
    this._finished = false;
    this._closing = null;
    this.resumeAttempt = 0;
    this._beforeConnect();
    this._setState("connecting");
    const started = new Promise((resolve, reject) => {
      this._pending = { resolve, reject };
    });
    started.catch(() => {}); // settled before it is returned when close() comes first
    let url;
    try {
      url = await this._url();
    } catch (error) {
      if (generation === this._generation) {
        this._pending = null;
        this._finished = true; // nothing opened: no `close` event, connect() rejects
        this._setState("closed");
        await this._release();
      }
      throw error;
    }
    if (generation !== this._generation || this.state === "closed") {
      throw closedError(NORMAL, "the session was closed before it started");
    }
    this._resumeBase = url.split("?")[0];
    try {
      this._open(url);
    } catch (error) {
      this._pending = null;
      await this._finish(NORMAL, "invalid URL"); // new WebSocket() refused the URL
      throw error;
    }
    return started;
  }

  /** @returns {Attempt} */
  _open(url) {
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let ready;
    let closed;
    /** @type {Attempt} */
    const attempt = {
      socket,
      url,
      started: false,
      retryAfter: null,
      ready: new Promise((resolve) => (ready = resolve)),
      closed: new Promise((resolve) => (closed = resolve)),
    };
    this._attempt = attempt;
    socket.onmessage = (message) => {
      if (typeof message.data !== "string") {
        if (this.state !== "closed") this._onAudio(message.data);
        return;
      }
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === "session.started" && !attempt.started) {
        attempt.started = true;
        this._started(event);
        ready();
        return;
      }
      if (event.type === "error" && typeof event.retry_after === "number") {
        attempt.retryAfter = event.retry_after;
      }
      // server_restart is the one ending that is not final: resume elsewhere at once.
      if (event.type === "session.ended" && event.reason !== "server_restart") this.ended = true;
      this._onEvent(event);
    };
    socket.onclose = (close) => {
      const code = socket === this._dropped ? DROPPED : close.code;
      ready();
      closed();
      if (this.socket === socket) this.socket = null;
      if (this._attempt === attempt) this._attempt = null;
      this.lastClose = { code, reason: close.reason };
      if (this.state === "closed") return; // close() is ending it: it settles everything
      this._onClose(code, close.reason, attempt);
    };
    return attempt;
  }

  _started(event) {
    const resumed = this.sessionId === event.session_id;
    this.sessionId = event.session_id;
    this.resumeToken = event.resume_token;
    this.agentInfo = event.agent;
    this.resumeAttempt = 0;
    if (this.state === "closed") return; // close() waited for this only to say `close`
    this._setState("open");
    const pending = this._pending;
    this._pending = null;
    if (pending) pending.resolve(event);
    this._sessionStarted(event, resumed);
  }

  _onClose(code, reason, attempt) {
    const o = this.options;
    let action = closeAction({
      code,
      started: attempt.started,
      ended: this.ended,
      hasSession: Boolean(this.resumeToken),
      retryAfter: attempt.retryAfter,
    });
    if (!o.autoResume || this.resumeAttempt >= o.maxResumeAttempts) action = FINAL;
    if (action.action === "final") {
      this._finish(code, reason);
      return;
    }
    this.resumeAttempt += 1;
    const delayMs = action.delayMs ?? backoffMs(this.resumeAttempt);
    // Before the session started this is still `connecting` (connect() has not settled).
    if (action.action === "resume") this._setState("reconnecting");
    this._emit("reconnecting", {
      reason: `closed_${code}`,
      source: "client",
      attempt: this.resumeAttempt,
      delayMs,
    });
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = null;
      if (this.state === "closed") return;
      if (action.action === "resume") {
        this.stats.reconnects += 1;
        this._open(this._resumeUrl());
      } else {
        this._open(attempt.url);
      }
    }, delayMs);
  }

  /** The session is over: state `closed`, connect() rejected if pending, `close`, release. */
  _finish(code, reason) {
    if (this._finished) return this._released;
    this._finished = true;
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
    this._setState("closed");
    const pending = this._pending;
    this._pending = null;
    if (pending) pending.reject(closedError(code, `connection closed (${code})`));
    this._emit("close", { code, reason });
    this._released = this._release();
    return this._released;
  }

  _send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN || this.state !== "open") {
      throw new Error("the session is not open");
    }
    this.socket.send(JSON.stringify(message));
  }

  /**
   * End the session for good: `close` to the server, then the microphone's tracks stopped,
   * the AudioContext closed and the socket closed. A connection still starting (a resume
   * included) is waited for (3 s at most) so that it can be told `close`; while a resume
   * waits for its backoff, the session is resumed only to be closed. Safe to call more
   * than once. `connect()`, if pending, rejects with `error.code` 1000.
   * @returns {Promise<void>}
   */
  close() {
    if (!this._closing) this._closing = this._closeNow();
    return this._closing;
  }

  async _closeNow() {
    const waitingToResume = Boolean(this.resumeTimer) && this.state === "reconnecting";
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
    this._generation += 1;
    const liveSession = Boolean(this.resumeToken) && !this.ended && !this._finished;
    this.ended = true;
    this._setState("closed");
    const pending = this._pending;
    this._pending = null;
    if (pending) pending.reject(closedError(NORMAL, "the session was closed before it started"));
    let attempt = this._attempt;
    if (!attempt && waitingToResume && liveSession) {
      // The session waits on the server for this client: take it up only to end it.
      attempt = this._open(this._resumeUrl());
    }
    if (attempt) await this._sayClose(attempt);
    await this._finish(NORMAL, "closed by the client");
  }

  /** @param {Attempt} attempt */
  async _sayClose(attempt) {
    const socket = attempt.socket;
    if (!attempt.started && socket.readyState <= WebSocket.OPEN) {
      await Promise.race([attempt.ready, sleep(CLOSE_START_WAIT_MS)]);
    }
    if (attempt.started && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "close" }));
      // The server answers session.ended and closes; do not wait long for it.
      await Promise.race([attempt.closed, sleep(CLOSE_WAIT_MS)]);
    }
    if (socket.readyState !== WebSocket.CLOSED) socket.close(NORMAL);
    if (this.socket === socket) this.socket = null;
    if (this._attempt === attempt) this._attempt = null;
  }

  /** For tests: drop the connection as a network failure would (the SDK then resumes). */
  debugDropConnection() {
    if (!this.socket) return;
    this._dropped = this.socket; // its close counts as 1006, whatever code the server echoes
    this.socket.close(4900, "test: connection dropped");
  }

  // Hooks of VoiceAgent.
  _beforeConnect() {}
  _sessionStarted(_event, _resumed) {}
  _onEvent(_event) {}
  _onAudio(_data) {}
  async _release() {}
}
