#!/usr/bin/env bash
# What `make run` needs beyond Python: HAProxy, the load balancer `accessd local` starts in
# front of the services (`accessd lb`). Installed only when missing; without it `accessd local`
# runs without the balancer (and says so).
set -euo pipefail
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run-deps: installing haproxy"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  else
    echo "run-deps: haproxy missing (sudo apt-get install haproxy); accessd local runs without its load balancer"
  fi
fi
