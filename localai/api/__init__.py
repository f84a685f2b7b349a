"""The OpenAI-compatible HTTP API (Werkzeug app served by Waitress)."""
