"""The fast lane: every test that trains in a subprocess, builds a wheel or a venv, submits to
SLURM, starts a fresh Python process or compiles with ``torch.compile`` is marked ``slow`` here,
in one place, so a new test cannot forget the marker.

``bash scripts/test.sh -m "not slow"`` runs the rest. A test is slow when it asks for one of the
fixtures below (directly or through another fixture), or when its body, one of its fixtures or a
test-suite function they call names one of the helpers below. tests/test_fast_lane.py fails when
one of these names no longer exists, so a rename cannot quietly empty the list.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, FunctionType

import pytest

TESTS = Path(__file__).resolve().parent

# Fixtures that start a training run, a wheel + venv build or a SLURM job.
SLOW_FIXTURES = frozenset({"run_entry", "slurm", "torch_only_venv"})
# Functions of the test suite that start such a subprocess when called.
SLOW_HELPERS = frozenset({"start_training", "run_module"})
# Names whose use costs seconds: a fresh interpreter (subprocess, multiprocessing's spawn) imports
# torch again, and torch.compile traces and builds.
SLOW_NAMES = frozenset({"subprocess", "spawn", "compile"})


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    """``code`` and the code of the functions, lambdas and comprehensions defined inside it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def _defined_in(function: FunctionType, folders: tuple[Path, ...]) -> bool:
    source = Path(function.__code__.co_filename)
    return any(source.is_relative_to(folder) for folder in folders)


def names_reached(function: FunctionType) -> set[str]:
    """Global and attribute names that ``function`` uses, with those of the test-suite functions
    it calls (found by name in its module's globals), transitively. Test-suite functions are
    those defined under tests/ or beside ``function``'s own file."""
    folders = (TESTS, Path(inspect.unwrap(function).__code__.co_filename).parent)
    names: set[str] = set()
    pending, seen = [function], set()
    while pending:
        current = inspect.unwrap(pending.pop())
        if not isinstance(current, FunctionType) or current in seen:
            continue
        seen.add(current)
        used = {name for code in _code_objects(current.__code__) for name in code.co_names}
        names |= used
        for name in used:
            called = current.__globals__.get(name)
            if isinstance(called, FunctionType) and _defined_in(called, folders):
                pending.append(called)
    return names


def slow_reason(item: pytest.Item) -> str | None:
    """Why ``item`` belongs out of the fast lane, or None."""
    fixtures = SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if fixtures:
        return f"uses the fixture {sorted(fixtures)[0]}"
    if item.get_closest_marker("slurm") is not None:
        return "submits to SLURM"
    test = getattr(item, "obj", None)
    if not isinstance(test, FunctionType):
        return None
    functions = [test]
    fixture_info = getattr(item, "_fixtureinfo", None)  # pytest's own map of a test's fixtures
    if fixture_info is not None:
        for definitions in fixture_info.name2fixturedefs.values():
            functions.extend(definition.func for definition in definitions)
    folders = (TESTS, Path(test.__code__.co_filename).parent)
    for function in functions:
        if isinstance(function, FunctionType) and _defined_in(function, folders):
            reached = names_reached(function)
            helpers = SLOW_HELPERS & reached
            if helpers:
                return f"calls {sorted(helpers)[0]}"
            costly = SLOW_NAMES & reached
            if costly:
                return f"uses {sorted(costly)[0]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is None and slow_reason(item) is not None:
            item.add_marker(pytest.mark.slow)
