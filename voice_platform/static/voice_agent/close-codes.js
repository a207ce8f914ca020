// What a browser client does after its socket closed: the SDK's policy over the close
// codes of docs/protocol.md 2.5, the Python client's (voice_client.protocol.should_resume)
// plus the handshake retries of 4012 and 4013. Tabled in docs/clients.md#browser-sdk.

/** Closes after which the session is still there: resume with the resume token. */
const RESUMABLE = new Set([1001, 1006, 1012]);
const NORMAL = 1000; // the server says session.ended before its own 1000 (see closeAction)
const SERVER_RESTART = 4012;
const UNAVAILABLE = 4013;

/** @typedef {{action: "final"} | {action: "resume" | "retry", delayMs: number | null}} CloseAction */

/** @type {CloseAction} */
export const FINAL = { action: "final" };

/**
 * What the SDK does after a socket closed (before any limit on attempts).
 *
 * `resume`: connect with the resume token; `retry`: connect with the same URL and token
 * again (a handshake refused with 4012 or 4013 did not use it up). `delayMs` null means the
 * jittered backoff.
 *
 * @param {object} close
 * @param {number} close.code the close code (1006: dropped without a close frame)
 * @param {boolean} close.started whether `session.started` came on this connection
 * @param {boolean} close.ended whether a final `session.ended` came (not `server_restart`)
 * @param {boolean} close.hasSession whether a session was started (a resume token is held)
 * @param {number | null} [close.retryAfter] seconds, from an `error` on this connection
 * @returns {CloseAction}
 */
export function closeAction({ code, started, ended, hasSession, retryAfter = null }) {
  if (ended) return FINAL;
  const again = hasSession ? "resume" : "retry";
  if (code === SERVER_RESTART) {
    // After session.started it is `server_restart`: resume at once (the balancer sends the
    // new connection to a running process). At the handshake: this process is stopping.
    return { action: again, delayMs: started ? 0 : null };
  }
  if (code === UNAVAILABLE) {
    // At the handshake: the database unreachable (`error` `unavailable`) or the platform at
    // its session capacity (`error` `busy`), each with retry_after first.
    // After session.started it is `upstream_busy`, which `session.ended` made final above.
    const waitMs = typeof retryAfter === "number" ? retryAfter * 1000 : null;
    return !started && waitMs !== null ? { action: again, delayMs: waitMs } : FINAL;
  }
  // A 1000 without `session.ended` came from something between (a proxy), not the server,
  // which always says session.ended first: the session is still there.
  if (RESUMABLE.has(code) || code === NORMAL) {
    return hasSession ? { action: "resume", delayMs: null } : FINAL;
  }
  return FINAL; // 1002, 1007, 1009, 1011, 4000, 4001, 4003, 4008, 4009, 4011, 4029, 4030, unknown
}
