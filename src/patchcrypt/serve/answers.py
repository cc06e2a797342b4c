"""What the client accepts from a server: answers bounded in size, every field checked, strings cleaned.

A server is not trusted. Its answers are read up to :data:`MAX_ANSWER_BYTES`; ``GET /v1/model`` must have
the fields and types :func:`model_info_from_server` lists (anything else is one clear error); every string
it sends is stripped of control and format characters (terminal escapes, bidirectional overrides) and
shortened before it can reach a terminal or a log (:func:`clean_text`); predictions must name exactly the
images sent and only announced classes (:func:`predictions_from_server`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import PatchcryptError

MAX_ANSWER_BYTES = 1 << 20      # one answer (model description, predictions, error)
MAX_CLASSES = 100_000
MAX_TEXT = 200                  # characters kept of one server string (a class name, a model name)
MAX_ERROR_TEXT = 300            # characters kept of a server's error message
_HEX16 = re.compile(r"[0-9a-f]{16}")


def clean_text(value: Any, limit: int = MAX_TEXT) -> str:
    """``value`` as text safe to print: control (Cc), format (Cf, e.g. bidi overrides) and line/paragraph
    separator characters removed, at most ``limit`` characters (an ellipsis marks a cut)."""
    text = "".join(ch for ch in str(value) if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _int(info: Mapping, name: str, lo: int, hi: int, optional: bool = False) -> Optional[int]:
    v = info.get(name)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise PatchcryptError(f"the server's /v1/model has an invalid {name} ({clean_text(v, 40)}); refusing "
                              "to send")
    return v


def model_info_from_server(info: Any, max_pixels: int) -> Dict[str, Any]:
    """The server's ``GET /v1/model`` answer, checked field by field and with every string cleaned.

    Required: ``model`` (text), ``classes`` (1..100,000 texts), ``scheme`` (text), ``image_size``
    ([H, W, C], C 1 or 3, H·W ≤ ``max_pixels``). Optional: ``block_size`` (1..4096), ``key_fingerprint``
    (16 hex digits), ``per_image``, ``keyed`` (booleans), ``jpeg_quality`` (1..100), ``subsampling``,
    ``max_images`` (≥ 1; 64 when absent), ``max_body_bytes`` (≥ 1). Raises one-line PatchcryptError.
    """
    if not isinstance(info, dict) or "scheme" not in info or "image_size" not in info:
        raise PatchcryptError("not a patchcrypt server (unexpected /v1/model answer)")
    classes = info.get("classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES \
            or not all(isinstance(c, str) for c in classes):
        raise PatchcryptError("the server's /v1/model has no valid class list; refusing to send")
    size = info.get("image_size")
    if not isinstance(size, list) or len(size) != 3 \
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size) \
            or size[2] not in (1, 3) or size[0] * size[1] > max_pixels:
        raise PatchcryptError(f"the server's /v1/model announces an invalid image size "
                              f"({clean_text(size, 60)}); refusing to send")
    if not isinstance(info.get("scheme"), str) or not isinstance(info.get("model", ""), str):
        raise PatchcryptError("the server's /v1/model has an invalid scheme or model name; refusing to send")
    fp = info.get("key_fingerprint")
    if fp is not None and not (isinstance(fp, str) and _HEX16.fullmatch(fp)):
        raise PatchcryptError("the server's /v1/model has an invalid key fingerprint; refusing to send")
    for name in ("per_image", "keyed"):
        if not isinstance(info.get(name, False), bool):
            raise PatchcryptError(f"the server's /v1/model has an invalid {name}; refusing to send")
    sub = info.get("subsampling")
    if sub is not None and sub not in ("420", "422", "444"):
        raise PatchcryptError("the server's /v1/model has an invalid subsampling; refusing to send")
    max_images = _int(info, "max_images", 1, 1 << 20, optional=True)
    return {"model": clean_text(info.get("model", "")), "classes": [clean_text(c) for c in classes],
            "scheme": clean_text(info["scheme"], 64), "block_size": _int(info, "block_size", 1, 4096, True),
            "key_fingerprint": fp, "image_size": [int(v) for v in size],
            "jpeg_quality": _int(info, "jpeg_quality", 1, 100, True), "subsampling": sub,
            "per_image": bool(info.get("per_image", False)), "keyed": bool(info.get("keyed", False)),
            "max_images": 64 if max_images is None else max_images,
            "max_body_bytes": _int(info, "max_body_bytes", 1, 1 << 40, True)}


def predictions_from_server(body: Any, names: Sequence[str], classes: Sequence[str], top_k: int) -> List[Dict]:
    """The server's ``POST /v1/classify`` answer for images sent under the opaque names ``0``, ``1``, ...,
    checked and mapped back to the caller's ``names`` (which never left this machine), in their order."""
    preds = body.get("predictions") if isinstance(body, dict) else None
    bad = PatchcryptError("the server's answer does not match the images sent; ignoring it")
    if not isinstance(preds, list) or len(preds) != len(names):
        raise bad
    known = {c: i for i, c in reversed(list(enumerate(classes)))}
    out: List[Optional[Dict]] = [None] * len(names)
    for p in preds:
        idx = p.get("name") if isinstance(p, dict) else None
        if not isinstance(idx, str) or not idx.isdigit() or int(idx) >= len(names) or out[int(idx)] is not None:
            raise bad
        top = p.get("top")
        if not isinstance(top, list) or not 1 <= len(top) <= top_k:
            raise bad
        rows = []
        for t in top:
            prob = t.get("probability") if isinstance(t, dict) else None
            if not isinstance(t, dict) or clean_text(t.get("label")) not in known \
                    or isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
                raise bad
            label = clean_text(t["label"])
            rows.append({"label": label, "index": known[label], "probability": float(prob)})
        if clean_text(p.get("label")) != rows[0]["label"]:
            raise bad
        out[int(idx)] = {"name": names[int(idx)], "label": rows[0]["label"], "top": rows}
    return out  # type: ignore[return-value]
