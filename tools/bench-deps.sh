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
# py-spy: `bench/scale.py --profile DIR` records localmesos and the scheduler with it (the
# bench runs without it otherwise).
VENV_PY="${VENV:-.venv}/bin/python"
if [ -x "$VENV_PY" ] && ! [ -x "$(dirname "$VENV_PY")/py-spy" ]; then
  "$VENV_PY" -m pip install -q py-spy >/dev/null 2>&1 || echo "bench-deps: py-spy not installed (bench/scale.py --profile needs it)"
fi
