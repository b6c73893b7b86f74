"""Where the kernel comes from: the cache built once and reloaded, foreign or corrupt libraries
rebuilt, the compiler's version in the key, a private directory where the cache is read-only,
and the sanitized build kept apart from the normal one."""

import os
import subprocess
import sys
import time

import pytest
import torch

from lovaszseg.losses import native, native_build

pytestmark = pytest.mark.path("native")


def _fresh(monkeypatch, cache):
    """A kernel state as in a new process, without a wheel's library, caching in ``cache``."""
    monkeypatch.setattr(native_build, "prebuilt", lambda variant, digest: None)
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "enabled", True)
    monkeypatch.setenv("LOVASZSEG_CACHE_DIR", str(cache))


def _built(cache):
    return sorted(cache.glob("lovasz-*.so"))


def test_builds_into_the_cache_once_and_reloads_it(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    assert native.library() is not None
    (built,) = _built(tmp_path)
    mtime = built.stat().st_mtime_ns
    _fresh(monkeypatch, tmp_path)
    assert native.library().path == built and built.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".build-*")), "partial files left behind"
    assert (built.stat().st_mode & 0o777) == 0o755


def test_a_library_of_another_source_or_interface_is_rebuilt(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    (built,) = _built(tmp_path) if native.library() else ()
    # A library under the cache's name but built from another source: refused, rebuilt.
    for command in native_build.build_commands(
        native_build.compiler(), "openmp", str(built), "0" * 16
    ):
        subprocess.run(command, check=True)
    _fresh(monkeypatch, tmp_path)
    lib = native.library()
    assert lib is not None and lib.lovasz_source_hash().decode() == native_build.source_hash()
    # A corrupt file under the cache's name: rebuilt too.
    built.write_bytes(b"not a shared library")
    _fresh(monkeypatch, tmp_path)
    assert native.library() is not None and native.library().lovasz_abi() == native_build.ABI


def test_the_compilers_version_is_part_of_the_cache_key(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    native.library()
    monkeypatch.setattr(native_build, "compiler_version", lambda name: "gcc (a later one) 99.0")
    _fresh(monkeypatch, tmp_path)
    native.library()
    assert len(_built(tmp_path)) == 2


def test_an_unwritable_cache_builds_into_a_private_directory(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fresh(monkeypatch, blocker / "cache")  # cannot be created, even as root
    monkeypatch.setattr(native_build, "private_dir", lambda: tmp_path / "private")
    lib = native.library()
    assert lib is not None and lib.path.parent == tmp_path / "private"


def test_without_any_place_to_build_one_warning_and_the_pytorch_path(monkeypatch, tmp_path):
    from lovaszseg.losses import lovasz_softmax

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fresh(monkeypatch, blocker / "cache")
    monkeypatch.setattr(native_build, "private_dir", lambda: blocker / "private")
    probas = torch.rand(2, 3, 8, 8).softmax(1)
    labels = torch.randint(0, 3, (2, 8, 8))
    with pytest.warns(RuntimeWarning, match="fused CPU kernel is unavailable") as record:
        loss = lovasz_softmax(probas, labels)
        lovasz_softmax(probas, labels)
    assert len(record) == 1
    monkeypatch.setattr(native, "enabled", False)
    torch.testing.assert_close(loss, lovasz_softmax(probas, labels))


def test_without_a_compiler_warns_and_falls_back(monkeypatch, tmp_path):
    from lovaszseg.losses import lovasz_softmax

    _fresh(monkeypatch, tmp_path)
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        lovasz_softmax(torch.rand(2, 3, 4, 4).softmax(1), torch.randint(0, 3, (2, 4, 4)))
    assert native.library() is None and not _built(tmp_path)


def test_a_compiler_without_openmp_still_builds_the_kernel(monkeypatch, tmp_path):
    """Apple's clang has no -fopenmp: the kernel then builds single-threaded, same results."""
    from lovaszseg.losses import lovasz_hinge, lovasz_softmax

    g = torch.Generator().manual_seed(9)
    probas = torch.randn(3, 6, 20, 20, generator=g).softmax(1)
    labels = torch.randint(0, 6, (3, 20, 20), generator=g)
    logits = torch.randn(3, 20, 20, generator=g)
    expected = [lovasz_softmax(probas, labels).item(), lovasz_hinge(logits, labels % 2).item()]
    _fresh(monkeypatch, tmp_path)
    monkeypatch.setitem(native_build.VARIANTS, "openmp", ["-fno-such-flag-openmp"])
    assert native.library().variant == "serial"
    got = [lovasz_softmax(probas, labels).item(), lovasz_hinge(logits, labels % 2).item()]
    assert got == expected


def test_four_processes_starting_together_build_once(tmp_path):
    """DDP ranks on one node: one build (file lock), every rank loads it."""
    log = tmp_path / "compiler.log"
    wrapper = tmp_path / "cc"
    real = native_build.compiler()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nsleep 1\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "CC": str(wrapper), "LOVASZSEG_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        "import sys, time; t = float(sys.argv[1]); time.sleep(max(0, t - time.time()));"
        "from lovaszseg.losses import native, native_build;"
        "native_build.prebuilt = lambda variant, digest: None;"
        "lib = native.library(); print(lib.variant, lib.path)"
    )
    start = str(time.time() + 4)
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", code, start], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [rank.communicate(timeout=180)[0].split() for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks)
    assert {tuple(out) for out in outputs} == {("openmp", str(_built(tmp_path / "cache")[0]))}
    compiles = [line for line in log.read_text().splitlines() if " -c " in f" {line} "]
    assert len(compiles) == 1, compiles


def test_a_wheels_library_is_used_only_if_built_from_this_source(monkeypatch, tmp_path):
    """An editable install's in-place library goes stale when _native.c changes: refused."""
    digest = native_build.source_hash()
    for name, built_from in (
        ("_lovasz_openmp.stale.so", "0" * 16),
        ("_lovasz_serial.ok.so", digest),
    ):
        variant = "openmp" if "openmp" in name else "serial"
        for command in native_build.build_commands(
            native_build.compiler(), variant, str(tmp_path / name), built_from
        ):
            subprocess.run(command, check=True)
    monkeypatch.setattr(native_build, "_HERE", tmp_path)
    assert native_build.prebuilt("openmp", digest) is None
    assert native_build.prebuilt("serial", digest).path == tmp_path / "_lovasz_serial.ok.so"


def test_the_sanitized_build_has_its_own_name_and_never_a_wheels_library(monkeypatch):
    cc, digest = native_build.compiler() or "cc", native_build.source_hash()
    monkeypatch.setattr(native_build, "compiler_version", lambda name: "cc 1.0")
    monkeypatch.setenv("LOVASZSEG_SANITIZE", "0")
    plain = native_build.cached_name(cc, "openmp", digest)
    plain_commands = native_build.build_commands(cc, "openmp", "/t.so", digest)
    monkeypatch.setenv("LOVASZSEG_SANITIZE", "1")
    asan = native_build.cached_name(cc, "openmp", digest)
    compile_, link = native_build.build_commands(cc, "openmp", "/t.so", digest)
    assert asan != plain and "-asan-" in asan and "-asan-" not in plain
    assert "-fsanitize=address,undefined" in compile_ and "-fsanitize=address,undefined" in link
    assert not any("sanitize" in arg for command in plain_commands for arg in command)
    assert native_build.prebuilt("openmp", digest) is None


def test_a_sanitize_flag_other_than_0_or_1_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("LOVASZSEG_SANITIZE", "yes")
    with pytest.raises(ValueError, match="LOVASZSEG_SANITIZE must be 0 or 1, got 'yes'"):
        native_build.sanitized()
