"""The manifest ``patchcrypt.json`` that ``patchcrypt encrypt`` writes beside an encrypted tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from ..errors import PatchcryptError

MANIFEST_NAME = "patchcrypt.json"
MANIFEST_FORMAT = "patchcrypt-dataset"


def read_manifest(directory) -> Optional[Dict]:
    """The manifest of an encrypted tree (searching ``directory`` and its parent), or None."""
    directory = Path(directory)
    for d in (directory, directory.parent):
        path = d / MANIFEST_NAME
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise PatchcryptError(f"{path}: unreadable manifest ({exc})") from None
            if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
                raise PatchcryptError(f"{path}: not a patchcrypt manifest")
            data["_root"] = str(d)
            return data
    return None
