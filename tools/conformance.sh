#!/usr/bin/env bash
# `make conformance`: the conformance lane. The same scenarios (conformance/) run against a real
# Apache Mesos 1.12 master and agent and against localmesos, side by side.
#
# The real Mesos is a tarball outside the project (`../shared/mesos/` beside the clone, or
# $MESOS_TARBALL); without it the lane says so in one line and exits 0. With it, this script
# installs the runtime packages its README names when missing, unpacks it once into
# .cache/mesos-1.12/ (ignored by git), runs the scenarios and checks that no process of the run is
# left in the process table.
set -euo pipefail
cd "$(dirname "$0")/.."
TARBALL=${MESOS_TARBALL:-../shared/mesos/mesos-1.12.0-debian12-x86_64.tar.gz}
CACHE=.cache/mesos-1.12
PY=${PY:-.venv/bin/python}

if [ ! -f "$TARBALL" ]; then
  echo "conformance: no real Mesos tarball at $TARBALL; lane skipped"
  exit 0
fi

# Runtime libraries of the Debian 12 build (its README, "Runtime packages").
runtime=(libgrpc++1.51 libprotobuf32 libzookeeper-mt2 libsvn1 libsasl2-2 libcurl4 libapr1
         libaprutil1 libarchive13)
need=()
for pkg in "${runtime[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "conformance: installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "conformance: missing runtime packages ${need[*]} (not root or no apt-get)" >&2
    exit 1
  fi
fi

# Unpack once; a marker records which tarball (size + mtime) the cache holds.
stamp="$(stat -c '%s %Y' "$TARBALL")"
if [ ! -x "$CACHE/mesos-1.12.0/bin/mesos-master" ] || [ "$(cat "$CACHE/.unpacked" 2>/dev/null)" != "$stamp" ]; then
  echo "conformance: unpacking $(basename "$TARBALL") into $CACHE"
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  tar -xzf "$TARBALL" -C "$CACHE"
  echo "$stamp" > "$CACHE/.unpacked"
fi
export ACCESSD_REAL_MESOS="$PWD/$CACHE/mesos-1.12.0"
"$ACCESSD_REAL_MESOS/bin/mesos-master" --version >/dev/null  # every library resolves

# Each run gets its own directory; every process of the run carries it in its environment, so
# the process table shows whatever is left behind.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/accessd-conformance.XXXXXX")
export ACCESSD_CONFORMANCE_TABLE="$PWD/.cache/conformance-table.txt"
rm -rf .cache/conformance-logs  # logs of this run's failed and listed scenarios
started=$(date +%s)
status=0
"$PY" -m pytest conformance -c conformance/pytest.ini --rootdir=. -p no:cacheprovider \
  --basetemp="$run_dir/pytest" ${CONFORMANCE_ARGS:-} || status=$?
left=$("$PY" -m conformance.proctable "$run_dir" || true)
if [ -n "$left" ]; then
  echo "conformance: processes left behind (killed now):" >&2
  echo "$left" >&2
  "$PY" -m conformance.proctable --kill "$run_dir" >/dev/null || true
  status=1
fi
echo "conformance: lane finished in $(( $(date +%s) - started ))s, exit $status"
echo "conformance: table in .cache/conformance-table.txt; logs of failed/listed scenarios in .cache/conformance-logs/"
if [ "$status" = 0 ]; then rm -rf "$run_dir"; else echo "conformance: work dirs kept in $run_dir"; fi
exit "$status"
