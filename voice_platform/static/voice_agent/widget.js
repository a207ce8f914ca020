// <voice-agent-widget token-url="/voice-token" server="wss://platform.example/ws/v1/live">
// A talk button for a tenant's own site. The token comes from the tenant's backend
// (`token-url`, POST with the page's cookies and an X-CSRFToken header from the
// `csrf-token` attribute or the `csrftoken` cookie; answers {"token": ...}); the page never
// holds an API key. docs/clients.md#widget.
import { VoiceAgent } from "./voice-agent.js";

const REFUSALS = {
  4001: "This link has expired. Reload the page and try again.",
  4003: "This site is not allowed to talk to this agent.",
  4029: "All lines are busy. Try again in a minute.",
  4013: "The service is busy. Try again in a minute.",
  4030: "Too many attempts. Try again later.",
};

const STYLE = `
  :host { font: 14px system-ui, sans-serif; display: inline-block; }
  .box { border: 1px solid #ccc; border-radius: 8px; padding: 8px 12px; max-width: 22em; }
  button { font: inherit; padding: 6px 14px; border-radius: 16px; border: 0;
           background: #1a73e8; color: white; cursor: pointer; }
  button.live { background: #c5221f; }
  .status { color: #555; margin: 6px 0 0; }
  .status.refused { color: #c5221f; }
  .said { margin: 6px 0 0; max-height: 8em; overflow: auto; }
`;

/** The value of a cookie of this page, or null. */
function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

export class VoiceAgentWidget extends HTMLElement {
  static get observedAttributes() {
    return ["label"];
  }

  constructor() {
    super();
    /** @type {VoiceAgent | null} the conversation in progress */
    this.agent = null;
    /** @type {"idle"|"connecting"|"live"|"ended"|"refused"|"error"} */
    this.state = "idle";
    /** @type {number | null} the close code of the last conversation */
    this.closeCode = null;
    // Only the shadow tree here: an element being created may not get attributes in its
    // constructor (document.createElement would throw), so data-state waits for
    // connectedCallback.
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style>
      <div class="box" part="box">
        <button part="button" type="button"></button>
        <p class="status" part="status" role="status"></p>
        <div class="said" part="transcript" aria-live="polite"></div>
      </div>`;
    this.button = root.querySelector("button");
    this.statusLine = root.querySelector(".status");
    this.said = root.querySelector(".said");
    this.button.addEventListener("click", () => this.toggle());
    this.button.textContent = "Talk to us";
  }

  connectedCallback() {
    this._render(this.state, this.statusLine.textContent);
  }

  attributeChangedCallback() {
    this._render(this.state, this.statusLine.textContent);
  }

  disconnectedCallback() {
    const agent = this.agent;
    this.agent = null;
    if (agent) agent.close();
  }

  /**
   * The CSRF header for `token-url`: the `csrf-token` attribute, else (a same-origin
   * token-url only) the `csrftoken` cookie, as Django expects (docs/clients.md#widget).
   * @returns {Record<string, string>}
   */
  _tokenHeaders(tokenUrl) {
    let token = this.getAttribute("csrf-token");
    if (!token && tokenUrl && new URL(tokenUrl, location.href).origin === location.origin) {
      token = cookie("csrftoken");
    }
    return token ? { "X-CSRFToken": token } : {};
  }

  /** Start a conversation, or end the one in progress. */
  async toggle() {
    const current = this.agent;
    this.agent = null; // its late callbacks are ignored from here on
    if (current && !current.ended) {
      this._render("ended", "Conversation ended.");
      await current.close();
      return;
    }
    if (current) current.close(); // the server ended it, its close is not here yet: start anew
    const tokenUrl = this.getAttribute("token-url") || undefined;
    let lastError = null;
    let endReason = null;
    // Callbacks of a conversation that is no longer this widget's are ignored.
    const mine = (fn) => (e) => {
      if (this.agent === agent) fn(e);
    };
    const agent = new VoiceAgent({
      tokenUrl,
      tokenHeaders: this._tokenHeaders(tokenUrl),
      server: this.getAttribute("server") || undefined,
      onTranscript: mine(({ role, text }) => this._said(role, text)),
      onText: mine(({ text }) => this._said("model", text)),
      onTurnComplete: mine(() => this._endOfTurn()),
      onInterrupted: mine(() => this._endOfTurn()),
      onError: mine((e) => (lastError = e)),
      onSessionEnded: mine(({ reason }) => {
        endReason = reason;
        this._render("ended", `Conversation ended (${reason}).`);
      }),
      onReconnecting: mine(() => this._render("connecting", "Reconnecting…")),
      onResumed: mine(() => this._render("live", "Listening…")),
      onClose: mine(({ code }) => this._closed(agent, code, { lastError, endReason })),
    });
    this.agent = agent;
    this.closeCode = null;
    this._render("connecting", "Connecting…");
    try {
      await agent.connect();
      await agent.startMicrophone();
      if (this.agent === agent) this._render("live", "Listening…");
    } catch (error) {
      this._closed(agent, error && error.code, { error, lastError, endReason });
    }
  }

  /** The conversation is over (whoever ended it): say why; the next click starts anew. */
  _closed(agent, code, { error = null, lastError = null, endReason = null } = {}) {
    if (this.agent !== agent) return; // ended by the button, or already told
    this.agent = null;
    this.closeCode = code ?? null;
    if (agent.state !== "closed") agent.close();
    const started = agent.sessionId !== null;
    if (code in REFUSALS) {
      this._render("refused", REFUSALS[code]);
    } else if (code === 1000) {
      this._render("ended", `Conversation ended${endReason ? ` (${endReason})` : ""}.`);
    } else {
      const why = lastError?.message || error?.message || `code ${code}`;
      this._render("error", `${started ? "The conversation stopped" : "Could not connect"}: ${why}.`);
    }
    this.dispatchEvent(new CustomEvent("voice-agent-closed", { detail: { code } }));
  }

  _said(role, text) {
    // Transcripts stream in pieces: one line per speaker's turn.
    const last = this.said.lastElementChild;
    if (last && last.dataset.role === role && !last.dataset.done) {
      last.textContent += text;
    } else {
      const line = document.createElement("div");
      line.dataset.role = role;
      line.textContent = `${role === "user" ? "You" : "Agent"}: ${text}`;
      this.said.append(line);
    }
    this.said.scrollTop = this.said.scrollHeight;
  }

  _endOfTurn() {
    for (const line of this.said.children) line.dataset.done = "1";
  }

  _render(state, status) {
    this.state = state;
    this.setAttribute("data-state", state);
    const live = state === "live" || state === "connecting";
    this.button.textContent = live ? "End" : this.getAttribute("label") || "Talk to us";
    this.button.classList.toggle("live", live);
    this.statusLine.textContent = status;
    this.statusLine.classList.toggle("refused", state === "refused");
  }
}

if (!customElements.get("voice-agent-widget")) {
  customElements.define("voice-agent-widget", VoiceAgentWidget);
}
