"""The server's settings: batching, request limits and the connection guards (:class:`ServeConfig`)."""

from dataclasses import dataclass
from typing import Optional

API = "/v1"

__all__ = ["API", "ServeConfig"]


@dataclass
class ServeConfig:
    max_batch: int = 64            # images per model call
    batch_window_ms: float = 0.0   # extra wait for more requests before a batch runs
    max_images: int = 64           # images per request
    max_body_bytes: int = 8 << 20  # request body size limit
    top_k: int = 5
    device: Optional[str] = None
    header_timeout_s: float = 10.0      # request line + headers, from connect (or the previous response)
    body_timeout_s: float = 30.0        # the whole body, from the end of the head
    keep_alive_s: float = 5.0           # idle time allowed between requests on one connection
    max_connections_per_client: int = 32   # open connections per remote address
    max_connections: int = 1024         # open connections in all
    max_half_open: int = 256            # connections without a complete request head, all addresses together
    health_counters: bool = False       # /v1/health also reports batches, images and connections
