"""The docs: the site builds strictly and offline, the README's links lead somewhere, and the
benchmark tables say what the results files hold."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_tables():
    spec = importlib.util.spec_from_file_location(
        "benchmark_tables", ROOT / "docs" / "hooks" / "benchmark_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strictly_without_the_network(tmp_path):
    """Strict mode turns every warning into a failure: a link to a missing page or anchor, an API
    entry naming a function that no longer exists, a docstring whose parameters do not match the
    signature. Every proxy points at a closed port, so a build that reaches for the network fails."""
    dead = "http://127.0.0.1:9"
    env = os.environ | {
        "NO_MKDOCS_2_WARNING": "1",
        **{name: dead for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        "NO_PROXY": "",
        "no_proxy": "",
    }
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    api = (site / "api" / "index.html").read_text()
    for name in ("lovasz_hinge", "lovasz_softmax", "LovaszSoftmaxLoss", "LovaszMultilabelLoss"):
        assert f'id="lovaszseg.losses.{name}"' in api, name
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    assert "<!-- benchmark:" not in benchmarks
    assert benchmarks.count("<table>") == len(re.findall(r"<!-- benchmark: ", _docs("benchmarks")))
    assert not list(site.rglob("*.py"))  # the hook is not published


def _docs(page: str) -> str:
    return (ROOT / "docs" / f"{page}.md").read_text()


def test_readme_links_lead_to_files_of_the_repository():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert any(t.startswith("docs/") for t in local)
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_stays_a_front_door():
    """What, install, the two commands, three examples, links: the rest belongs in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; move details to docs/"


def test_sync_table_states_the_measured_times_and_their_ratio(tmp_path):
    result = {"world_size": 2, "threads": 1, "rounds": 7, "cases": {"hinge": {"none": 20.0, "global": 110.0}}}  # fmt: skip
    (tmp_path / "bench_sync_cpu.json").write_text(json.dumps(result))
    table = _benchmark_tables().render("bench_sync_cpu.json", tmp_path)
    assert "| hinge | 20 | 110 | 5.5× |" in table.splitlines()
    assert "2 gloo processes, 1 thread each, 7 rounds" in table


def test_losses_table_leaves_a_dash_where_a_measurement_is_missing(tmp_path):
    row = {
        "title": "a B=8 C=21 256² voc_like batch",
        "median_ms": {"baseline": 50.0, "lovaszseg": 75.0},
        "lovaszseg_over_baseline": 1.5,
        "peak_mb": {},
    }
    result = {"rows": [row], "device_name": "cpu", "torch": "2.4", "threads": 2,
              "processes": 3, "rounds": 5, "lovaszseg_kernel": "c"}  # fmt: skip
    (tmp_path / "bench.json").write_text(json.dumps(result))
    lines = _benchmark_tables().render("bench.json", tmp_path).splitlines()
    assert lines[2] == "| a B=8 C=21 256² voc_like batch | 50.0 | 75.0 | – | 1.5× | – |"
    assert "peak MB" not in lines[0]
