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
COPY voice_client ./voice_client
COPY manage.py ./
RUN pip install --no-cache-dir . && mkdir -p /app/var
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--websocket-max-message-size", "65536", \
     "--websocket-max-frame-size", "65536", "voice_platform.asgi:application"]
