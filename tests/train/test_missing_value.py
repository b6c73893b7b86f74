"""A config value left ``???`` (``lovaszseg-eval`` without ``ckpt_path``) is the user's to give:
one line naming the key, exit status 2, no traceback."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from lovaszseg.config.console import run_for_people


def read_checkpoint_path(cfg):
    return cfg.ckpt_path


def test_a_missing_mandatory_value_is_refused_in_one_line_naming_the_key(capsys):
    cfg = OmegaConf.create({"ckpt_path": "???"})
    with pytest.raises(SystemExit) as stop:
        run_for_people(read_checkpoint_path, cfg)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == "error: ckpt_path is required: add ckpt_path=... to the command\n"
    assert "Traceback" not in captured.out


def test_a_nested_key_is_named_in_full(capsys):
    cfg = OmegaConf.create({"data": {"root": "???"}})
    with pytest.raises(SystemExit):
        run_for_people(lambda c: c.data.root, cfg)
    assert (
        capsys.readouterr().err
        == "error: data.root is required: add data.root=... to the command\n"
    )
