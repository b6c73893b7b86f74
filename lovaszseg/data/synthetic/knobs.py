"""Generator settings: a difficulty preset overridden knob by knob, and typos refused by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_knobs(presets: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]) -> dict:
    """Difficulty preset named by `settings["difficulty"]`, overridden by any knob in `settings`
    that is not None (the configs list every knob as null, so Hydra overrides need no `+`)."""
    name = settings.get("difficulty") or "easy"
    if name not in presets:
        raise ValueError(f"unknown difficulty {name!r}; expected one of {sorted(presets)}")
    knobs = dict(presets[name])
    for key, value in settings.items():
        if key in knobs and value is not None:
            knobs[key] = tuple(value) if isinstance(knobs[key], tuple) else value
    for key, value in knobs.items():
        numbers = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
            raise ValueError(f"synthetic.{key} must be a [min, max] pair, got {list(value)}")
        like = presets[name][key]
        if any(
            not isinstance(n, int | float) or isinstance(n, bool) != isinstance(like, bool)
            for n in numbers
        ):
            raise ValueError(f"synthetic.{key} must be like {like!r}, got {value!r}")
        if any(n < 0 for n in numbers):
            raise ValueError(f"synthetic.{key} must not be negative, got {value!r}")
    return knobs


def check_keys(settings: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Reject typos in generator settings instead of silently ignoring them."""
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(
            f"unknown {where} setting(s) {unknown}; expected some of {sorted(allowed)}"
        )
