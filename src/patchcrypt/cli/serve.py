"""``patchcrypt serve`` (the server, which has no key) and ``patchcrypt classify`` (the client, which has it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .app import app


@app.command()
def serve(
    run: Path = typer.Argument(..., help="Run folder or checkpoint (trained on encrypted images, or keyed)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Images per model call when batching."),
    batch_window_ms: float = typer.Option(0.0, "--batch-window-ms", min=0.0,
                                          help="Wait this long for more requests before running a batch."),
    max_images: int = typer.Option(64, "--max-images", min=1, help="Images per request."),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", min=0.001, help="Request body size limit."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1,
                                         help="Seconds a client has to send a request's headers (else 408)."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.1,
                                       help="Seconds a client has to send a request's body (else 408)."),
    max_connections_per_client: int = typer.Option(32, "--max-connections-per-client", min=1,
                                                   help="Open connections per client address (behind a proxy "
                                                        "all clients share its address)."),
    max_connections: int = typer.Option(1024, "--max-connections", min=1, help="Open connections in all."),
    max_half_open: int = typer.Option(256, "--max-half-open", min=1,
                                      help="Connections still sending a request's headers, all clients together; "
                                           "over it the oldest is closed (the rest of --max-connections stays "
                                           "free for complete requests)."),
    health_counters: bool = typer.Option(False, "--health-counters",
                                         help="/v1/health also reports batches, images and connections."),
    device: Optional[str] = typer.Option(None, "--device"),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
) -> None:
    """Serve a model over HTTP. The server never receives a key: clients send encrypted images."""
    from ..serve.config import ServeConfig
    from ..serve.routes import create_app
    from ..serve.transport import bind_socket, make_server

    cfg = ServeConfig(max_batch=max_batch, batch_window_ms=batch_window_ms, max_images=max_images,
                      max_body_bytes=int(max_body_mb * (1 << 20)), device=device, header_timeout_s=header_timeout,
                      body_timeout_s=body_timeout, max_connections_per_client=max_connections_per_client,
                      max_connections=max_connections, max_half_open=max_half_open,
                      health_counters=health_counters)
    if max_half_open >= max_connections:
        from ..errors import PatchcryptError

        raise PatchcryptError(f"--max-half-open ({max_half_open}) must be below --max-connections "
                              f"({max_connections}), so that complete requests keep room")
    application = create_app(run, cfg)
    sock = bind_socket(host, port)
    info = application.state.info
    h, w, c = info["image_size"]
    typer.echo(f"serving {info['model']} ({info['scheme']}, M={info['block_size']}, key "
               f"{info['key_fingerprint'] or 'none'}, {h}x{w}x{c}) on http://{host}:{sock.getsockname()[1]}  "
               "(Ctrl-C stops)")
    make_server(application, sock, access_log).run(sockets=[sock])


def _client_config(path: Optional[Path]) -> dict:
    """The owner's settings from a YAML file (``scheme``, ``block_size``, ``key``, ``server``,
    ``image_size``); a run's ``config.yaml`` from 'patchcrypt train' works as is (its other options are not
    used here; its ``model_kwargs: {img_size: N}`` gives the image size)."""
    if path is None:
        return {}
    import yaml

    from ..bounded import METADATA_MAX, read_text_bounded
    from ..errors import PatchcryptError

    try:
        doc = yaml.safe_load(read_text_bounded(path, METADATA_MAX, "config")) or {}
    except yaml.YAMLError as exc:
        raise PatchcryptError(f"{path}: cannot read the config ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise PatchcryptError(f"{path}: a config must be a mapping of option: value")
    out = {k: doc[k] for k in ("scheme", "block_size", "key", "server", "image_size") if doc.get(k) is not None}
    kw = doc.get("model_kwargs")
    if "image_size" not in out and isinstance(kw, dict) and kw.get("img_size") is not None:
        out["image_size"] = kw["img_size"]
    # a run trained on an encrypted folder has scheme: null in its config; its summary.json has the record
    summary = _run_summary(path.parent / "summary.json") if "data" in doc else {}
    for name, field in (("scheme", "scheme"), ("block_size", "block_size"), ("image_size", "img_size")):
        if name not in out and summary.get(field) is not None:
            out[name] = summary[field]
    return out


def _run_summary(path: Path) -> dict:
    """A run folder's summary.json, or {} where there is none (a config file copied elsewhere)."""
    from ..bounded import METADATA_MAX, read_text_bounded
    from ..errors import PatchcryptError

    if not path.is_file():
        return {}
    try:
        doc = json.loads(read_text_bounded(path, METADATA_MAX, "summary"))
    except (ValueError, RecursionError):
        raise PatchcryptError(f"{path}: not a run summary (cannot read it as JSON)") from None
    return doc if isinstance(doc, dict) else {}


@app.command()
def classify(
    images: List[Path] = typer.Argument(..., help="Plain image files; they are encrypted here before sending."),
    server: Optional[str] = typer.Option(None, "--server", help="The server's base URL "
                                         "(default http://127.0.0.1:8000)."),
    key: Optional[Path] = typer.Option(None, "--key", "-k", help="Your key (must match the served model's)."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="How you encrypt (the server must announce the "
                                         "same; its word alone is never used)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Your block size M (checked likewise)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with scheme, block_size, key, server "
                                          "(a run's config.yaml works); flags override it."),
    allow_weak_scheme: bool = typer.Option(False, "--allow-weak-scheme",
                                           help="Allow sending under 'plain' (unencrypted) or a single step "
                                                "(step-*)."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", min=1, max=100,
                                               help="Send EtC JPEG at this quality (default: lossless PNG)."),
    image_size: Optional[str] = typer.Option(None, "--image-size", help="Your image size, N or HxW (the "
                                             "server must announce the same; --resize resizes to it)."),
    resize: bool = typer.Option(False, "--resize", help="Bring images to your --image-size first, as train and "
                                "evaluate do (aspect kept, short side to size/0.875, centre crop)."),
    top_k: int = typer.Option(3, "--top-k", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as one JSON object."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1),
) -> None:
    """Encrypt images locally with your key and classify them on a 'patchcrypt serve' server."""
    # the owner names the scheme and block size (flags or --config); Client refuses before sending anything
    # when the server announces another scheme, block size or key fingerprint
    from ..keys import Key
    from ..serve.client import Client

    cfg = _client_config(config)
    server = server or cfg.get("server") or "http://127.0.0.1:8000"
    key_path = key or cfg.get("key")
    k = Key.load(key_path) if key_path else None
    with Client(server, k, timeout, scheme=scheme or cfg.get("scheme"),
                block_size=block_size if block_size is not None else cfg.get("block_size"),
                allow_weak_scheme=allow_weak_scheme,
                image_size=image_size if image_size is not None else cfg.get("image_size")) as client:
        client.cipher()  # checks scheme, block size and key against the served model before anything is sent
        preds = client.classify_files(images, jpeg_quality, resize, top_k)
    if as_json:
        typer.echo(json.dumps({"server": server, "predictions": preds}))
        return
    for p in preds:
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in p["top"])
        typer.echo(f"{p['name']}: {p['label']}  ({top})")
