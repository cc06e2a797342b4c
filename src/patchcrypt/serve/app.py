"""The classification server: a FastAPI app around one checkpoint; it holds no key and never decrypts.

The server is four pieces, each a module of this package; this module gathers their public names:

* :mod:`~patchcrypt.serve.model`: load a checkpoint fit to serve and its announcement (``GET /v1/model``);
* :mod:`~patchcrypt.serve.batcher`: concurrent requests merged into model calls on one worker thread;
* :mod:`~patchcrypt.serve.routes`: the FastAPI app (``/v1/health``, ``/v1/model``, ``/v1/classify``), every
  client error a 4xx ``{"error": "..."}``;
* :mod:`~patchcrypt.serve.transport`: the listening socket, uvicorn's h11 protocol guarded against slow and
  idle clients (head deadline, per-address, total and half-open connection limits), running the server.

Settings for all of them are one :class:`~patchcrypt.serve.config.ServeConfig`.
"""

from .batcher import Batcher
from .config import API, ServeConfig
from .model import load_served_model, model_info
from .routes import HTTPError, create_app
from .transport import ConnectionBook, bind_socket, guarded_protocol, make_server, running_server

__all__ = ["API", "Batcher", "ConnectionBook", "HTTPError", "ServeConfig", "bind_socket", "create_app",
           "guarded_protocol", "load_served_model", "make_server", "model_info", "running_server"]
