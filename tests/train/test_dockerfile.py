"""The Dockerfile stays buildable: what it copies exists, and what it runs is importable."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    joined = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [tuple(line.split(maxsplit=1)) for line in lines if line and not line.startswith("#")]


def test_copied_paths_exist_and_are_not_dockerignored():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for keyword, args in instructions():
        if keyword == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source not in ignored, source


def test_entry_point_is_the_training_module_run_outside_the_source_tree():
    steps = instructions()
    entry = json.loads(next(args for keyword, args in steps if keyword == "ENTRYPOINT"))
    assert entry[-2:] == ["-m", "lovaszseg.train"]
    importlib.import_module(entry[-1])
    workdirs = [args for keyword, args in steps if keyword == "WORKDIR"]
    copied_into = workdirs[0]
    assert workdirs[-1] != copied_into  # the run directory must not shadow the installed package
    assert steps[0][0] == "FROM" and "cuda" in steps[0][1]
