"""Where the benchmarks' results go: ``<stem>_<device>.json`` under benchmarks/results, written
atomically, naming the device they were measured on."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def device_name(device: str) -> str:
    """The accelerator's name (``torch.cuda.get_device_name``), or ``cpu``."""
    return torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"


def write_results(stem: Path, device: str, payload: dict) -> Path:
    """``payload`` as ``<stem>_<device type>.json``, replaced whole or not at all."""
    path = stem.with_name(f"{stem.name}_{device.split(':')[0]}.json")
    write_json_atomic(path, payload)
    print(f"wrote {path}")
    return path


def write_json_atomic(path: Path, payload: dict) -> None:
    """``payload`` as JSON at ``path``, through a temporary file of its folder renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(payload, f, indent=2)
    os.replace(f.name, path)
