"""localai: an OpenAI-compatible server over natively built llama.cpp and whisper.cpp."""

__version__ = "0.1.0"
