"""Where the fused CPU kernel (``_native.c``) comes from: found, built, cached and checked.

In order:

1. a **platform wheel** carries it already compiled next to this file (``_lovasz_openmp*.so``,
   ``_lovasz_serial*.so``, built by ``setup.py``): no compiler needed on the user's machine;
2. otherwise (source or editable installs, or a library built from another source) it is
   compiled once per machine with the system's C compiler (``$CC``, else ``cc``/``gcc``/
   ``clang``) into a cache directory (``$LOVASZSEG_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/lovaszseg``, else ``~/.cache/lovaszseg``), under a file lock so that the
   ranks of a node build it once; where the cache cannot be written, into a private temporary
   directory. The cache key covers the source, the flags and the compiler's version.

Every library is checked when loaded (the handshake): its interface number (``lovasz_abi``) and
the hash of the source it was built from must be this module's, else it is rebuilt; a cached
file that fails to load is rebuilt once.

**One OpenMP runtime.** The library is compiled with ``-fopenmp`` but not linked to any OpenMP
runtime: its ``GOMP_*`` symbols resolve, when loaded, to the runtime PyTorch has already mapped
(``libgomp.so.1``, or a wheel's renamed ``libgomp-<hash>.so.1``), made global for that. So the
kernel and PyTorch share one thread pool, bounded by ``torch.set_num_threads``. Where no such
runtime is mapped, the single-threaded build is used.

**Sanitized build.** With ``LOVASZSEG_SANITIZE=1`` the kernel is compiled with AddressSanitizer
and UndefinedBehaviorSanitizer (``SANITIZE_FLAGS``), under its own cache name, and a wheel's
library is never used. Python itself is not instrumented, so the process must start with the
sanitizer runtime preloaded (``scripts/sanitize.sh`` does it).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ABI = 4  # must equal LOVASZ_ABI in _native.c
_HERE = Path(__file__).parent
_SOURCE = _HERE / "_native.c"
# -fno-trapping-math lets loops with selects vectorise (nothing here reads FP exception flags).
COMPILE_FLAGS = ["-O3", "-std=c11", "-fPIC", "-fno-trapping-math"]
VARIANTS = {"openmp": ["-fopenmp"], "serial": []}
# -O1 keeps the reports' stacks readable; the sanitizers trap on the first error.
SANITIZE_FLAGS = [
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]
_RUNTIME_NAME = re.compile(r"^lib(gomp|iomp5|omp)([-.][^/]*)?\.so[^/]*$")


class KernelUnavailable(RuntimeError):
    """The kernel could not be found, built or loaded (the message says why)."""


def sanitized() -> bool:
    """Whether the kernel is to be built under the sanitizers (``LOVASZSEG_SANITIZE=1``)."""
    value = os.environ.get("LOVASZSEG_SANITIZE", "0")
    if value not in ("0", "1"):
        raise ValueError(f"LOVASZSEG_SANITIZE must be 0 or 1, got {value!r}")
    return value == "1"


def flags(variant: str) -> list[str]:
    """The compiler flags of ``variant`` ("openmp" or "serial"), sanitized or not."""
    extra = SANITIZE_FLAGS if sanitized() else []
    return [*COMPILE_FLAGS, *VARIANTS[variant], *extra]


def source_hash() -> str:
    """The hash that a library built from this package's ``_native.c`` reports."""
    return hashlib.sha256(_SOURCE.read_bytes()).hexdigest()[:16]


def openmp_runtimes(maps: str | None = None) -> list[str]:
    """The OpenMP runtimes mapped in this process (paths, in order of first mapping), read from
    ``/proc/self/maps`` (or the given text); empty where that cannot be read."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return []
    found = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5] if len(fields) == 6 else ""
        named = path.startswith("/") and _RUNTIME_NAME.match(os.path.basename(path))
        if named and path not in found:
            found.append(path)
    return found


def _share_runtime() -> bool:
    """Makes PyTorch's OpenMP runtime's symbols global, so that the kernel binds to it; False
    where PyTorch has none mapped (the kernel is then single-threaded)."""
    runtimes = openmp_runtimes()
    if not runtimes:
        return False
    try:
        ctypes.CDLL(runtimes[0], mode=os.RTLD_GLOBAL | getattr(os, "RTLD_NOLOAD", 0))
    except OSError:
        return False
    return True


def cache_dir() -> Path:
    if os.environ.get("LOVASZSEG_CACHE_DIR"):
        return Path(os.environ["LOVASZSEG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lovaszseg"


def compiler() -> str | None:
    """``$CC`` when set (and only it), else the first of cc, gcc, clang found."""
    if os.environ.get("CC"):
        name = os.environ["CC"]
        return name if shutil.which(name.split()[0]) else None
    return next((name for name in ("cc", "gcc", "clang") if shutil.which(name)), None)


@functools.cache
def compiler_version(name: str) -> str:
    done = subprocess.run([*name.split(), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else name


def build_commands(cc: str, variant: str, target: str, digest: str) -> list[list[str]]:
    """Compile, then link without any OpenMP runtime (its symbols bind at load time)."""
    obj = target + ".o"
    variant_flags = flags(variant)
    compile_ = [*cc.split(), *variant_flags]
    compile_ += [f'-DLOVASZ_SOURCE_HASH="{digest}"', "-c", str(_SOURCE), "-o", obj]
    sanitizers = [flag for flag in variant_flags if flag.startswith("-fsanitize")]
    return [compile_, [*cc.split(), "-shared", *sanitizers, obj, "-o", target]]


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` (ranks of a node that start together build once)."""
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no lock, the atomic rename still keeps the file whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile(cc: str, variant: str, target: Path, digest: str) -> None:
    """Builds into a temporary file of the target's directory, renamed into place."""
    fd, partial = tempfile.mkstemp(suffix=".so", prefix=".build-", dir=target.parent)
    os.close(fd)
    try:
        for command in build_commands(cc, variant, partial, digest):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise KernelUnavailable(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    finally:
        for leftover in (partial, partial + ".o"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)


@functools.lru_cache(maxsize=1)
def private_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lovaszseg-kernel-"))


def _handshake(path: Path, digest: str):
    """The library at ``path``, or KernelUnavailable when it does not load or was built for
    another interface or source."""
    try:
        lib = ctypes.CDLL(str(path))
        lib.lovasz_abi.restype = ctypes.c_int
        lib.lovasz_source_hash.restype = ctypes.c_char_p
    except (OSError, AttributeError) as error:
        raise KernelUnavailable(f"{path} does not load: {error}") from error
    abi, built_from = lib.lovasz_abi(), lib.lovasz_source_hash().decode()
    if abi != ABI or built_from != digest:
        raise KernelUnavailable(
            f"{path} was built for interface {abi} from source {built_from}; this lovaszseg "
            f"needs interface {ABI} from source {digest}"
        )
    lib.path, lib.variant = path, None
    return lib


def prebuilt(variant: str, digest: str):
    """The library a platform wheel carries, or None (always None for the sanitized build)."""
    if sanitized():
        return None
    for path in sorted(_HERE.glob(f"_lovasz_{variant}*.so")):
        with contextlib.suppress(KernelUnavailable):
            return _handshake(path, digest)
    return None


def cached_name(cc: str, variant: str, digest: str) -> str:
    """The library's file name in the cache: a hash of everything that shapes the binary."""
    key = "\n".join([digest, cc, compiler_version(cc), *flags(variant), variant, str(ABI)])
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    kind = f"{variant}-asan" if sanitized() else variant
    return f"lovasz-{kind}-{tag}-{platform.machine()}.so"


def cached(variant: str, digest: str):
    """The library from the cache (or a private temporary directory), built if needed."""
    cc = compiler()
    if cc is None:
        raise KernelUnavailable("no C compiler found (set CC)")
    name = cached_name(cc, variant, digest)
    errors = []
    for directory in (cache_dir(), None):
        try:
            directory = directory or private_dir()
            directory.mkdir(parents=True, exist_ok=True)
            target = directory / name
            with _file_lock(directory / f"{name}.lock"):
                if not target.exists():
                    _compile(cc, variant, target, digest)
                try:
                    return _handshake(target, digest)
                except KernelUnavailable:  # a broken or foreign file under our name: rebuild
                    target.unlink()
                    _compile(cc, variant, target, digest)
                    return _handshake(target, digest)
        except OSError as error:  # a read-only home or cache: try a private directory
            errors.append(f"{directory}: {error}")
    raise KernelUnavailable("; ".join(errors))


def find():
    """The first library that passes the handshake (``lib.path``, ``lib.variant`` say which),
    or KernelUnavailable listing why each candidate failed."""
    digest = source_hash()
    variants = ["openmp", "serial"] if _share_runtime() else ["serial"]
    errors = []
    for variant in variants:
        for source in (prebuilt, cached):
            try:
                lib = source(variant, digest)
            except KernelUnavailable as error:
                errors.append(f"{variant}: {error}")
                continue
            if lib is not None:
                lib.variant = variant
                return lib
    raise KernelUnavailable("\n".join(errors))
