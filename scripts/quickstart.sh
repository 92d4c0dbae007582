#!/usr/bin/env bash
# Set up .venv and run the quick start: model selection on NYC flights with local Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/python examples/quickstart.py "$@"
