"""Serving with client-side encryption: the HTTP server (no key) and the client (holds the key)."""

from .client import Client
from .config import ServeConfig
from .model import load_served_model
from .routes import create_app
from .transport import running_server

__all__ = ["Client", "ServeConfig", "create_app", "load_served_model", "running_server"]
