"""Helpers shared by the benchmark scripts: timing, markdown tables, atomic results.json."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from patchcrypt.atomic import atomic_write


def best_time(fn: Callable[[], object], repeats: int = 5, min_seconds: float = 0.0) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs after one warm-up (least disturbed by other load)."""
    fn()
    times = []
    t_end = time.perf_counter() + min_seconds
    while len(times) < repeats or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def markdown_table(rows: Sequence[Dict], columns: Sequence[str], headers: Sequence[str] = None) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def write_results(out_dir: Path, kind: str, config: Dict, rows: List[Dict], markdown: str,
                  figures: Sequence[str] = (), captions: Optional[Dict[str, str]] = None) -> Path:
    """Write ``out_dir/results.json`` atomically in the project's results format (``captions``: figure
    name → the caption the report shows under it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"kind": kind, "command": command_line(), "config": config, "rows": rows,
               "markdown": markdown, "figures": list(figures)}
    if captions:
        payload["captions"] = {k: v for k, v in captions.items() if k in payload["figures"]}
    return atomic_write(out_dir / "results.json", json.dumps(payload, indent=1, default=str))
