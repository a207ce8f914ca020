"""Live voice sessions: the WebSocket bridge to Gemini Live and its persisted state."""
