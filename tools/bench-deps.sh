#!/usr/bin/env bash
# What `make bench` uses beyond the test suite's packages: wrk, the HTTP load generator of
# bench/api.py and bench/services.py (without it they fall back to a slower Python generator,
# whose figures are a floor, and say so). Installed only when missing.
set -euo pipefail
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench-deps: installing wrk"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "bench-deps: wrk missing (the benches fall back to Python threads)"
  fi
fi
# py-spy: the sampling profiler of `bench/jobs.py --profile` and `bench/scale.py --profile`
# (into the project's venv; only those options use it).
VENV=${VENV:-$(dirname "$0")/../.venv}
if [ -x "$VENV/bin/python" ] && [ ! -x "$VENV/bin/py-spy" ]; then
  echo "bench-deps: installing py-spy into $VENV"
  "$VENV/bin/python" -m pip install --quiet py-spy || echo "bench-deps: py-spy not installed (only --profile needs it)"
fi
