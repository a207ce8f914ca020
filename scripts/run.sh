#!/usr/bin/env bash
# `make run`: migrate, demo data, the local Live emulator (unless a Gemini key is set), Daphne.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
EMULATOR_PORT=${EMULATOR_PORT:-8765}

$PY manage.py migrate --noinput
$PY manage.py bootstrap --demo

pids=()
cleanup() { for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

if [ -z "${GEMINI_API_KEY:-}" ] && [ -z "${LIVE_API_BASE_URL:-}" ]; then
  # No Gemini key: the platform talks to the local emulator, which trusts any key.
  $PY manage.py live_emulator --host 127.0.0.1 --port "$EMULATOR_PORT" &
  pids+=($!)
  export LIVE_API_BASE_URL="https://127.0.0.1:$EMULATOR_PORT"
  export LIVE_API_CA_FILE="${LIVE_API_CA_FILE:-$PWD/var/emulator-certs/cert.pem}"
  export GEMINI_API_KEY="emulator-key"
  for _ in $(seq 50); do [ -f "$LIVE_API_CA_FILE" ] && break; sleep 0.1; done
fi

echo "Serving on http://$HOST:$PORT  (admin: /admin/, API docs: /api/docs/)"
# 64 KiB caps a client message: the protocol's largest audio frame is 32,000 bytes.
.venv/bin/daphne -b "$HOST" -p "$PORT" \
  --websocket-max-message-size 65536 --websocket-max-frame-size 65536 \
  voice_platform.asgi:application &
pids+=($!)
wait -n
