#!/bin/sh
# The compose stack's one-shot `init` service (docker-compose.yml), run before the web
# processes and the worker start; safe to run at every start:
#   1. a random SECRET_KEY generated once into SECRET_KEY_FILE (the `secrets` volume),
#      unless the file is there already or SECRET_KEY_FILE is unset (SECRET_KEY given);
#   2. database migrations;
#   3. `manage.py bootstrap`: the first tenant, its admin user and an API key, printed once
#      (`docker compose logs init`); later runs change nothing.
set -eu

if [ -n "${SECRET_KEY_FILE:-}" ] && [ ! -s "$SECRET_KEY_FILE" ]; then
  umask 077
  # Written aside, then renamed: a reader never sees a half-written key.
  python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$SECRET_KEY_FILE.new"
  mv "$SECRET_KEY_FILE.new" "$SECRET_KEY_FILE"
  echo "init: generated a secret key into $SECRET_KEY_FILE"
fi

python manage.py migrate --noinput
python manage.py bootstrap
