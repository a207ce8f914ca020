# One image for every app service of docker-compose.yml: web (Daphne), worker (Celery),
# the one-shot init (deploy/init.sh) and the Live emulator.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/app/var
WORKDIR /app
COPY pyproject.toml README.md ./
COPY voice_platform ./voice_platform
COPY agents ./agents
COPY tools ./tools
COPY sessions ./sessions
COPY playground ./playground
COPY analytics ./analytics
COPY integrations ./integrations
COPY loadtest ./loadtest
COPY telephony ./telephony
COPY voice_client ./voice_client
COPY deploy ./deploy
COPY manage.py ./
RUN pip install --no-cache-dir .
# Static files (the admin's CSS, the browser SDK) collected into STATIC_ROOT (VAR_DIR/static)
# at build time, under the production settings the containers run; WhiteNoise serves them.
# The key and database here only let the settings load: nothing is signed or connected.
RUN DJANGO_SETTINGS_MODULE=voice_platform.settings.production \
    SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DATABASE_URL=postgres://build@localhost/build \
    python manage.py collectstatic --noinput
# Not root: the directories the services write (the emulator's certificate, the generated
# secret key) belong to the app user, and named volumes mounted there inherit that.
RUN useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /app/var /certs /secrets \
    && chown app /app/var /certs /secrets
USER app
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--websocket-max-message-size", "65536", \
     "--websocket-max-frame-size", "65536", "voice_platform.asgi:application"]
