#!/usr/bin/env bash
# Set up .venv and run the whole test suite (lint first, then pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$PWD/.venv/bin/python"
.venv/bin/ruff check cerebro tests examples benchmarks
.venv/bin/ruff format --check --quiet cerebro tests examples benchmarks
rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
fi
exit "$rc"
