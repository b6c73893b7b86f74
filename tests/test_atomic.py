"""The one atomic writer: whole files and folders only, and the mode the user's umask asks for."""

from __future__ import annotations

import json
import os
import stat

import pytest

from lovaszseg.runs.atomic import (
    atomic_path,
    replace_folder,
    staging_folder,
    write_json_atomic,
    write_text_atomic,
)


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_get_the_mode_a_plain_open_would_give(tmp_path, umask):
    write_text_atomic(tmp_path / "report.md", "# report\n")
    write_json_atomic(tmp_path / "results.json", {"a": 1})
    with atomic_path(tmp_path / "figure.png") as tmp:
        tmp.write_bytes(b"png")
    (tmp_path / "plain.txt").write_text("x")
    expected = 0o666 & ~umask
    assert mode(tmp_path / "plain.txt") == expected
    for name in ("report.md", "results.json", "figure.png"):
        assert mode(tmp_path / name) == expected, name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"a": float("nan")})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_folder_replaces_its_target_whole_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staging_folder(target) as folder:
        (folder / "new.txt").write_text("new")
        replace_folder(folder, target)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_a_failed_fill_leaves_the_old_folder_and_no_temporaries(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staging_folder(target) as folder:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("the generator failed")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]
