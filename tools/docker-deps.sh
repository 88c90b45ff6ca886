#!/usr/bin/env bash
# Docker for the container tests, the example container apps and the conformance lane:
# installs Debian's docker.io (and what `accessd image build` uses: busybox-static, debootstrap)
# when missing, and starts dockerd when none answers. The dockerd it starts runs with
# --bridge=none --iptables=false: no docker0, no NAT rules on this machine; containers use host
# networking, and BRIDGE apps use the user-defined bridge network `accessd-bridge` (created here,
# bridge device accessd0) whose published ports localmesos binds to the agent's loopback address (127.0.1.k) only.
#
# Never fails: when Docker cannot be had, it says why on stdout and in $ACCESSD_DOCKER_STATUS
# (.cache/docker-status), which the tests' `docker` fixture reads to skip with that reason.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
STATUS=${ACCESSD_DOCKER_STATUS:-.cache/docker-status}
LOG=${ACCESSD_DOCKERD_LOG:-$PWD/.cache/dockerd.log}
NETWORK=${LOCALMESOS_DOCKER_BRIDGE:-accessd-bridge}
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker || echo docker)

unavailable() {
  echo "docker-deps: Docker unavailable: $*"
  echo "unavailable: $*" > "$STATUS"
  exit 0
}

need=()
[ -x /usr/sbin/dockerd ] || need+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "docker-deps: installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
      || unavailable "apt-get install ${need[*]} failed"
  else
    unavailable "missing ${need[*]} (install them as root: apt-get install ${need[*]})"
  fi
fi
DOCKER=/usr/bin/docker

if ! "$DOCKER" info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || unavailable "no dockerd answers and starting one needs root"
  echo "docker-deps: starting dockerd (--bridge=none --iptables=false; log $LOG)"
  setsid nohup /usr/sbin/dockerd --bridge=none --iptables=false --ip6tables=false \
    >"$LOG" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 150); do
    "$DOCKER" info >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
      unavailable "dockerd exited at start: $(grep -m1 -iE 'level=(fatal|error)|failed' "$LOG" | cut -c1-300)"
    fi
    sleep 0.2
  done
  "$DOCKER" info >/dev/null 2>&1 || unavailable "dockerd (pid $pid) did not answer within 30 s; see $LOG"
fi

if ! "$DOCKER" network inspect "$NETWORK" >/dev/null 2>&1; then
  "$DOCKER" network create --driver bridge -o com.docker.network.bridge.name=accessd0 \
    "$NETWORK" >/dev/null || unavailable "cannot create the bridge network $NETWORK"
fi
echo "ok: $("$DOCKER" version --format 'server {{.Server.Version}}' 2>/dev/null)" > "$STATUS"
echo "docker-deps: $(cat "$STATUS")"
