// The playground page: wires the SDK to the page. `window.playground` is for tests.
import { VoiceAgent } from "../voice_agent/voice-agent.js";

const root = document.getElementById("playground");
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// ?processing=off: raw microphone audio (for synthetic test audio, which echo cancellation
// and noise suppression would alter).
const processing = params.get("processing") !== "off";

const playground = { agent: null, events: [], turns: [] };
window.playground = playground;

function status(text) {
  $("status").textContent = text;
}

function line(kind, text) {
  const transcript = $("transcript");
  const last = transcript.lastElementChild;
  // Streamed pieces of one speaker's turn join into one line.
  if (last && last.dataset.kind === kind && kind !== "note" && !last.dataset.done) {
    last.querySelector("span").textContent += text;
  } else {
    const div = document.createElement("div");
    div.className = kind;
    div.dataset.kind = kind;
    const who = kind === "user" ? "You: " : kind === "model" ? "Agent: " : "";
    div.innerHTML = `<b></b><span></span>`;
    div.querySelector("b").textContent = who;
    div.querySelector("span").textContent = text;
    transcript.append(div);
  }
  transcript.scrollTop = transcript.scrollHeight;
}

function endLines() {
  for (const div of $("transcript").children) div.dataset.done = "1";
}

function record(type, detail) {
  playground.events.push({ type, detail, at: performance.now() });
}

function setLive(live) {
  $("start").disabled = live;
  $("stop").disabled = !live;
  $("text").disabled = !live;
  $("send").disabled = !live;
}

async function start() {
  setLive(true);
  status("Connecting…");
  $("session-link").hidden = true;
  const agent = new VoiceAgent({
    tokenUrl: root.dataset.tokenUrl,
    tokenHeaders: { "X-CSRFToken": root.dataset.csrfToken },
    echoCancellation: processing,
    noiseSuppression: processing,
    autoGainControl: processing,
    onState: (state) => record("state", state),
    onSessionStarted: (e) => {
      record("sessionStarted", e);
      status(`Live: session ${e.sessionId}`);
      showSessionLink(e.sessionId);
    },
    onTranscript: (e) => {
      record("transcript", e);
      line(e.role, e.text);
    },
    onText: (e) => {
      record("text", e);
      line("model", e.text);
    },
    onTool: (e) => {
      record("tool", e);
      let item = document.querySelector(`#tools li[data-call="${CSS.escape(e.call_id)}"]`);
      if (!item) {
        item = document.createElement("li");
        item.dataset.call = e.call_id;
        $("tools").append(item);
      }
      item.textContent = `${e.name}: ${e.phase === "started" ? "running…" : e.status}`;
    },
    onUsage: (e) => record("usage", e),
    onTurnComplete: (e) => {
      record("turnComplete", e);
      endLines();
      playground.turns.push(e);
      const row = document.createElement("tr");
      const u = e.usage || {};
      for (const value of [playground.turns.length, e.latencyMs === null ? "–" : Math.round(e.latencyMs),
        u.prompt_tokens ?? "–", u.response_tokens ?? "–", u.total_tokens ?? "–"]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.append(cell);
      }
      $("turns").querySelector("tbody").append(row);
    },
    onInterrupted: () => {
      record("interrupted", agent.debugState()); // taken right after the SDK stopped playback
      line("note", "(interrupted)");
      endLines();
    },
    onWarning: (e) => {
      record("warning", e);
      line("note", `Warning: ${e.message}`);
    },
    onError: (e) => {
      record("error", e);
      line("note", `Error: ${e.message}`);
    },
    onReconnecting: (e) => {
      record("reconnecting", e);
      status(`Reconnecting (${e.reason})…`);
      line("note", `(reconnecting: ${e.reason})`);
      endLines();
    },
    onResumed: (e) => {
      record("resumed", e);
      status(`Live: session ${agent.sessionId} (resumed)`);
    },
    onSessionEnded: (e) => record("sessionEnded", e),
    onClose: (e) => {
      record("close", e);
      status(`Ended (${e.code}${e.reason ? ": " + e.reason : ""})`);
      setLive(false);
    },
    onLevel: (rms) => {
      $("level").value = Math.min(1, rms * 4);
    },
  });
  playground.agent = agent;
  try {
    await agent.connect();
    if ($("use-mic").checked) await agent.startMicrophone();
  } catch (error) {
    record("failed", { message: String(error) });
    status(`Could not start: ${error.message}`);
    setLive(false);
  }
}

function showSessionLink(id) {
  const link = $("session-link");
  const a = link.querySelector("a");
  a.href = root.dataset.sessionUrl.replace("{id}", id);
  a.textContent = id;
  link.hidden = false;
}

async function stop() {
  if (playground.agent) await playground.agent.close();
  setLive(false);
  status("Ended");
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !playground.agent) return;
  playground.agent.sendText(text);
  line("user", text);
  endLines();
  $("text").value = "";
});
