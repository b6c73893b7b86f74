"""Loss tests run through the fused C kernel and through the pure-PyTorch path.

A test (or module) marked ``@pytest.mark.path("native")`` or ``path("torch")`` runs on that path
only: kernel-specific tests, and float64 tests, which the kernel never sees.
"""

import pytest

from lovaszseg.losses import native


def pytest_generate_tests(metafunc):
    if "kernel" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("path")
        metafunc.parametrize(
            "kernel", marker.args if marker else ["native", "torch"], indirect=True
        )


@pytest.fixture(autouse=True)
def kernel(request, monkeypatch):
    """Selects the CPU kernel for this test (and for the processes it spawns)."""
    use_native = request.param == "native"
    if use_native and native.library() is None:
        pytest.skip("the fused CPU kernel could not be built here (no C compiler?)")
    monkeypatch.setattr(native, "enabled", use_native)
    monkeypatch.setenv("LOVASZSEG_NATIVE", "1" if use_native else "0")
    return request.param
