#!/usr/bin/env bash
# Set up and run the whole test suite (slow tests included: conversions and TFLite Micro arena searches).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow and not emulator" for
# the quick run between edits (about 2 min on 2 cores). The default leaves out the tests marked `heavy` (the
# longest slow ones); `scripts/test.sh -m heavy` runs them, and CI (.ci/run) runs both. A -m of yours replaces
# the default one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# The emulator tests need QEMU and the Arm cross compilers (Debian packages): installed here when running as
# root, otherwise run `sudo scripts/install_emulators.sh` once.
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install_emulators.sh >/dev/null
elif ! command -v qemu-aarch64 >/dev/null; then
  echo "scripts/test.sh: QEMU is missing; run 'sudo scripts/install_emulators.sh' or the emulator tests fail" >&2
fi
set +e
.venv/bin/python -m pytest -q -m "not heavy" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
