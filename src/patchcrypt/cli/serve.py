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
    device: Optional[str] = typer.Option(None, "--device"),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
) -> None:
    """Serve a model over HTTP. The server never receives a key: clients send encrypted images."""
    from ..serve.app import ServeConfig, bind_socket, create_app, make_server

    cfg = ServeConfig(max_batch=max_batch, batch_window_ms=batch_window_ms, max_images=max_images,
                      max_body_bytes=int(max_body_mb * (1 << 20)), device=device)
    application = create_app(run, cfg)
    sock = bind_socket(host, port)
    info = application.state.info
    h, w, c = info["image_size"]
    typer.echo(f"serving {info['model']} ({info['scheme']}, M={info['block_size']}, key "
               f"{info['key_fingerprint'] or 'none'}, {h}x{w}x{c}) on http://{host}:{sock.getsockname()[1]}  "
               "(Ctrl-C stops)")
    make_server(application, sock, access_log).run(sockets=[sock])


@app.command()
def classify(
    images: List[Path] = typer.Argument(..., help="Plain image files; they are encrypted here before sending."),
    server: str = typer.Option("http://127.0.0.1:8000", "--server", help="The server's base URL."),
    key: Optional[Path] = typer.Option(None, "--key", "-k", help="Your key (must match the served model's)."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", min=1, max=100,
                                               help="Send EtC JPEG at this quality (default: lossless PNG)."),
    resize: bool = typer.Option(False, "--resize", help="Resize images to the model's input size."),
    top_k: int = typer.Option(3, "--top-k", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as one JSON object."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1),
) -> None:
    """Encrypt images locally with your key and classify them on a 'patchcrypt serve' server."""
    from ..keys import Key
    from ..serve.client import Client

    k = Key.load(key) if key else None
    with Client(server, k, timeout) as client:
        client.cipher()  # checks the key against the served model before anything is read or sent
        preds = client.classify_files(images, jpeg_quality, resize, top_k)
    if as_json:
        typer.echo(json.dumps({"server": server, "predictions": preds}))
        return
    for p in preds:
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in p["top"])
        typer.echo(f"{p['name']}: {p['label']}  ({top})")
