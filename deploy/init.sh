#!/bin/sh
# The compose stack's one-shot `init` service (docker-compose.yml), run before the web
# processes and the worker start; safe to run at every start:
#   1. a random SECRET_KEY generated once into SECRET_KEY_FILE (the `secrets` volume),
#      unless the file is there already or SECRET_KEY_FILE is unset (SECRET_KEY given);
#   2. database migrations;
#   3. `manage.py bootstrap`: the first tenant, its admin user and an API key, written once
#      to FIRST_LOGIN_FILE (mode 0600, beside the secret key), never to the logs, which a
#      log driver would keep and copy; later runs change nothing.
set -eu
FIRST_LOGIN_FILE=${FIRST_LOGIN_FILE:-$(dirname "${SECRET_KEY_FILE:-/secrets/secret_key}")/first-login.json}

if [ -n "${SECRET_KEY_FILE:-}" ] && [ ! -s "$SECRET_KEY_FILE" ]; then
  umask 077
  # Written aside, then renamed: a reader never sees a half-written key.
  python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$SECRET_KEY_FILE.new"
  mv "$SECRET_KEY_FILE.new" "$SECRET_KEY_FILE"
  echo "init: generated a secret key into $SECRET_KEY_FILE"
fi

python manage.py migrate --noinput
umask 077
python manage.py bootstrap --json > "$FIRST_LOGIN_FILE.new"
if grep -q '"api_key": "vpk_' "$FIRST_LOGIN_FILE.new"; then
  mv "$FIRST_LOGIN_FILE.new" "$FIRST_LOGIN_FILE"
  echo "init: created the first tenant; its admin login and API key are in $FIRST_LOGIN_FILE"
  echo "init: read it once with: docker compose exec web1 cat $FIRST_LOGIN_FILE"
else
  rm -f "$FIRST_LOGIN_FILE.new"
  echo "init: already bootstrapped (nothing created)"
fi
