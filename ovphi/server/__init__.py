"""`ovphi serve`'s library: the OpenAI-compatible HTTP API on a warm engine (app.py), the request
shapes (schema.py), requests turned into conversations (requests.py), and its metrics (metrics.py)."""
from .app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
