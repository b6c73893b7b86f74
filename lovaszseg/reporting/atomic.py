"""Atomic file replacement: readers see the old file or the new one, never a torn one.

The project's one way to write a file that others read while it may change (results.json, the
reports, figures, data lists). The temporary file gets the mode a plain ``open`` would give
(0666 less the umask, 0644 by default), not ``mkstemp``'s 0600, so everyone who can read the
project folder can read what the runs write.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process's umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: str | Path, payload: Mapping[str, Any]) -> None:
    """Indented JSON with a final newline; NaN is refused (JSON has none)."""
    write_text_atomic(target, json.dumps(payload, indent=2, allow_nan=False) + "\n")
