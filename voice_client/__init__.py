"""The platform's Python client: the protocol, audio utilities and the `voice-agent` console."""
