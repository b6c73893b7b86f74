"""The sanitized kernel build (``LOVASZSEG_SANITIZE=1``) is live: a clean call runs without a
report, and a call that reads past its buffer is stopped by AddressSanitizer, so that the CI
stage ``scripts/sanitize.sh`` cannot pass by watching nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lovaszseg.losses import native_build

pytestmark = pytest.mark.path("native")

_CALL = r"""
import ctypes, sys, torch
from lovaszseg.losses import LovaszSoftmaxLoss, native
lib = native.library()
assert lib.path.name.startswith("lovasz-openmp-asan-") or lib.path.name.startswith("lovasz-serial-asan-"), lib.path
x = torch.randn(2, 5, 8, 8, requires_grad=True)
LovaszSoftmaxLoss()(x, torch.randint(0, 5, (2, 8, 8))).backward()
print("clean call done", flush=True)
if sys.argv[1] == "overflow":  # the softmax told of 3 pixels more than the buffers hold
    x = torch.randn(1, 4, 16)
    out = torch.empty_like(x)
    lib.lovasz_softmax(x.data_ptr(), out.data_ptr(), 1, 4, 19, 1)
    print("overflow not caught", flush=True)
"""


def _runtime(name: str) -> str | None:
    done = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True)
    path = done.stdout.strip()
    return path if done.returncode == 0 and os.path.isabs(path) else None


@pytest.mark.skipif(
    native_build.compiler() is None or _runtime("libasan.so") is None,
    reason="needs gcc with its AddressSanitizer runtime",
)
def test_the_sanitized_build_reports_an_overflow_and_nothing_else(tmp_path):
    env = {
        **os.environ,
        "LOVASZSEG_SANITIZE": "1",
        "LOVASZSEG_NATIVE": "1",
        "LD_PRELOAD": f"{_runtime('libasan.so')} {_runtime('libstdc++.so.6')}",
        "ASAN_OPTIONS": f"detect_leaks=0:halt_on_error=1:log_path={tmp_path}/asan",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        "OMP_NUM_THREADS": "2",
    }
    runs = {
        case: subprocess.run(
            [sys.executable, "-c", _CALL, case], env=env, capture_output=True, text=True
        )
        for case in ("clean", "overflow")
    }
    clean, overflow = runs["clean"], runs["overflow"]
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "clean call done" in clean.stdout
    assert overflow.returncode != 0 and "clean call done" in overflow.stdout
    assert "overflow not caught" not in overflow.stdout
    (report,) = Path(tmp_path).glob("asan.*")  # one report: the overflow's, not the clean run's
    text = report.read_text()
    assert "heap-buffer-overflow" in text and "lovasz_softmax" in text, text[:3000]
