"""``--help`` marks each group's default: the option the composed config picks."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources

import yaml

from lovaszseg.config.resolvers import group_options

MARK = re.compile(r"([\w.-]+) \(default\)")


def primary_defaults(config: str) -> dict[str, str | None]:
    """``group -> option`` from the defaults list of ``conf/<config>.yaml``."""
    text = resources.files("lovaszseg.conf").joinpath(f"{config}.yaml").read_text()
    entries = yaml.safe_load(text)["defaults"]
    return {
        group: option
        for entry in entries
        if isinstance(entry, dict)
        for group, option in entry.items()
        if not group.startswith("override ")
    }


def test_the_chosen_option_alone_is_marked_and_none_marks_nothing():
    listed = group_options("optimizer", "sgd").split(", ")
    unmarked = group_options("optimizer").split(", ")
    assert [name for name in listed if name.endswith(" (default)")] == ["sgd (default)"]
    assert [name.removesuffix(" (default)") for name in listed] == unmarked
    assert "(default)" not in group_options("experiment", None)


def test_train_help_marks_each_groups_default_and_follows_an_override(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lovaszseg.train", "loss=ce", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = {
        line.split("=")[0].strip(): line
        for line in proc.stdout.splitlines()
        if re.match(r"  \w+= ", line)
    }
    expected = primary_defaults("train") | {"loss": "ce"}
    for group, line in lines.items():
        marked = MARK.findall(line)
        assert marked == ([expected[group]] if expected[group] else []), line
    assert {"data", "model", "loss", "optimizer", "experiment"} <= set(lines)
