// <voice-agent-widget token-url="/voice-token" server="wss://platform.example/ws/v1/live">
// A talk button for a tenant's own site. The token comes from the tenant's backend
// (`token-url`, POST, answers {"token": ...}); the page never holds an API key.
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

export class VoiceAgentWidget extends HTMLElement {
  static get observedAttributes() {
    return ["label"];
  }

  constructor() {
    super();
    /** @type {VoiceAgent | null} */
    this.agent = null;
    /** idle, connecting, live, ended, refused, error */
    this.state = "idle";
    this.closeCode = null;
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
    this._render("idle", "");
  }

  attributeChangedCallback() {
    this._render(this.state, this.statusLine.textContent);
  }

  disconnectedCallback() {
    if (this.agent) this.agent.close();
  }

  /** Start a conversation, or end the one in progress. */
  async toggle() {
    if (this.agent) {
      await this.agent.close();
      this.agent = null;
      this._render("ended", "Conversation ended.");
      return;
    }
    const agent = new VoiceAgent({
      tokenUrl: this.getAttribute("token-url") || undefined,
      server: this.getAttribute("server") || undefined,
      onTranscript: ({ role, text }) => this._said(role, text),
      onText: ({ text }) => this._said("model", text),
      onTurnComplete: () => this._endOfTurn(),
      onInterrupted: () => this._endOfTurn(),
      onSessionEnded: ({ reason }) => this._render("ended", `Conversation ended (${reason}).`),
      onReconnecting: () => this._render("connecting", "Reconnecting…"),
      onResumed: () => this._render("live", "Listening…"),
      onClose: ({ code }) => this._closed(code),
    });
    this.agent = agent;
    this._render("connecting", "Connecting…");
    try {
      await agent.connect();
      await agent.startMicrophone();
      this._render("live", "Listening…");
    } catch (error) {
      const code = error && error.code;
      this._closed(code, error);
    }
  }

  _closed(code, error) {
    if (this.state === "refused" || this.state === "ended" || this.state === "error") return;
    this.closeCode = code ?? null;
    const agent = this.agent;
    this.agent = null;
    if (agent && agent.state !== "closed") agent.close();
    if (code in REFUSALS) {
      this._render("refused", REFUSALS[code]);
    } else if (code === 1000) {
      this._render("ended", "Conversation ended.");
    } else {
      this._render("error", `Could not connect${error ? `: ${error.message}` : ` (${code})`}.`);
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
