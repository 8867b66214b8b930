#!/usr/bin/env bash
# Set up and run the whole test suite (slow tests included: conversions and TFLite Micro arena searches).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" for a quick run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
