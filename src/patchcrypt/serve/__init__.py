"""Serving with client-side encryption: the HTTP server (no key) and the client (holds the key)."""

from .app import ServeConfig, create_app, load_served_model, running_server
from .client import Client

__all__ = ["Client", "ServeConfig", "create_app", "load_served_model", "running_server"]
