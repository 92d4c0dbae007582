#!/usr/bin/env bash
# Create .venv (Python 3.11) with Cerebro and its pinned dependencies. Idempotent: skips the
# install when setup.py and constraints.txt have not changed since the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || { echo "need $PY on PATH" >&2; exit 1; }
command -v java >/dev/null || { echo "need Java 17 (java on PATH) for Spark" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.cerebro-installed
want=$(cat setup.py constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,examples,benchmarks]"
  echo "$want" > "$stamp"
fi
