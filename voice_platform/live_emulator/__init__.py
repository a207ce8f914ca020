"""A local emulator of the Gemini Live service, indistinguishable to google-genai."""
