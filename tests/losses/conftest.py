"""Every loss test runs twice: through the fused C kernel and through the pure-PyTorch path."""

import pytest

from lovaszseg.losses import native


@pytest.fixture(autouse=True, params=["native", "torch"])
def kernel(request, monkeypatch):
    """Selects the CPU kernel for this test (and for the processes it spawns)."""
    use_native = request.param == "native"
    if use_native and native.library() is None:
        pytest.skip("the fused CPU kernel could not be built here (no C compiler?)")
    monkeypatch.setattr(native, "enabled", use_native)
    monkeypatch.setenv("LOVASZSEG_NATIVE", "1" if use_native else "0")
    return request.param
