"""The slow marking of tests/conftest.py: what it marks, through fixtures and helpers, and that
the names it looks for still exist in the suite."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from types import SimpleNamespace

from tests.conftest import SLOW_FIXTURES, SLOW_HELPERS, names_reached

TESTS = Path(__file__).resolve().parent

_suite = SimpleNamespace(deep_inside=lambda: None)


def _helper():
    _suite.deep_inside()


def _body_that_calls_the_helper():
    return [_helper() for _ in range(1)]


def _quick_body():
    return sum(range(3))


def test_a_name_is_found_through_the_functions_and_comprehensions_that_use_it():
    assert "deep_inside" in names_reached(_body_that_calls_the_helper)
    assert "deep_inside" not in names_reached(_quick_body)


def test_every_listed_fixture_and_helper_is_defined_in_the_suite():
    """A renamed fixture or helper would silently put its tests back in the fast lane."""
    defined = {
        node.name
        for path in TESTS.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
    }
    missing = (SLOW_FIXTURES | SLOW_HELPERS) - defined
    assert not missing, f"tests/conftest.py looks for {sorted(missing)}, which no test defines"


def test_only_tests_that_start_runs_leave_the_fast_lane(pytester):
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401")
    pytester.makeini(
        "[pytest]\nmarkers =\n    slow: slow\n    slurm: slurm\naddopts = --strict-markers"
    )
    pytester.makepyfile(
        test_suite=textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def run_entry():
                return None

            @pytest.fixture
            def trained(run_entry):
                return run_entry

            def start_training():
                return None

            def _resume():
                start_training()

            @pytest.fixture
            def checkpoint():
                _resume()

            def test_fixture(run_entry): pass
            def test_fixture_through_a_fixture(trained): pass
            def test_helper_in_the_body(): _resume()
            def test_helper_in_a_fixture(checkpoint): pass
            @pytest.mark.slurm
            def test_slurm(): pass
            def test_quick(): assert 1 + 1 == 2
            """
        )
    )
    fast = pytester.runpytest_inprocess("-m", "not slow", "-q")
    fast.assert_outcomes(passed=1, deselected=5)
    slow = pytester.runpytest_inprocess("-m", "slow", "-q", "--collect-only")
    assert "test_quick" not in slow.stdout.str()
