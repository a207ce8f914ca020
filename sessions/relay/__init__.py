"""The upstream side of the bridge: one Gemini Live session, kept alive across faults.

Pure asyncio and google-genai; no Django. The bridge talks to it through ``Relay``.
"""
