#!/usr/bin/env bash
# The C kernel under AddressSanitizer and UndefinedBehaviorSanitizer: builds it with
# LOVASZSEG_SANITIZE=1 (its own cache name, never mixed with the normal build) and runs the tests
# that reach it at 1 and 16 OpenMP threads, the sanitizer runtimes preloaded (Python itself is not
# instrumented). AddressSanitizer's reports, from pytest or from a process a test starts, go to
# log files; UndefinedBehaviorSanitizer's go to stderr (it ignores log_path beside ASan), kept
# uncaptured (-s) and searched. Any report, or any failed test, fails the run.
#
#   bash scripts/sanitize.sh                 # the CI selection
#   bash scripts/sanitize.sh tests/losses/test_fuzz.py   # other tests instead
set -uo pipefail
cd "$(dirname "$0")/.."
venv=${LOVASZSEG_VENV:-.venv}
libasan=$(gcc -print-file-name=libasan.so)
libstdcxx=$(gcc -print-file-name=libstdc++.so.6)
if [ ! -e "$libasan" ]; then
  echo "sanitize: gcc has no AddressSanitizer runtime (libasan.so not found)" >&2
  exit 2
fi
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  # The kernel against the definition, its edge cases, its calls and the fuzzed API; the
  # PyTorch path's own parametrisations are left out (the sanitizers watch only the kernel).
  tests=(tests/losses/test_kernel_definition.py tests/losses/test_native.py
    tests/losses/test_robust.py tests/losses/test_fuzz.py -k "not torch")
fi
reports=$(mktemp -d "${TMPDIR:-/tmp}/lovaszseg-sanitize-XXXXXX")
export NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled LOVASZSEG_SANITIZE=1
export LOVASZSEG_FUZZ=${LOVASZSEG_FUZZ:-sanitize}
failed=0
for threads in 1 16; do
  # libstdc++ first in line after libasan: ASan's __cxa_throw interceptor needs the real one
  # (Python does not link it; PyTorch throws C++ exceptions).
  if ! LD_PRELOAD="$libasan $libstdcxx" OMP_NUM_THREADS=$threads \
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$reports/asan" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    "$venv/bin/python" -m pytest -q -s -p no:cacheprovider "${tests[@]}" \
    2>&1 | tee "$reports/output-$threads.txt"; then
    echo "sanitize: tests failed at OMP_NUM_THREADS=$threads" >&2
    failed=1
  fi
done
asan=$(find "$reports" -maxdepth 1 -name 'asan.*' | wc -l)
ubsan=$(cat "$reports"/output-*.txt | grep -c 'runtime error:')
for log in "$reports"/asan.*; do
  [ -e "$log" ] && { echo "== $log"; head -60 "$log"; }
done
echo "sanitize: threads 1 and 16: ${asan} AddressSanitizer and ${ubsan} UndefinedBehaviorSanitizer report(s) (outputs in $reports)"
[ "$asan" -eq 0 ] && [ "$ubsan" -eq 0 ] && [ "$failed" -eq 0 ]
