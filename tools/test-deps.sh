#!/usr/bin/env bash
# System packages the test suite starts for real: headless Chromium (the status page) and
# ZooKeeper (zk:// master detection; its Java runtime comes with it) and HAProxy (`accessd lb`).
# Installed only when missing, so a second run costs nothing.
set -euo pipefail
need=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1 || need+=(zookeeper)
# openssl: the TLS tests make a throw-away certificate with it (tests/security/test_tls.py)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "test-deps: missing ${need[*]} (tests that need them are skipped)"
  fi
fi
# Docker (container apps on localmesos): docker.io, dockerd started when none runs, the bridge
# network; never fails: the container tests skip with the reason it writes.
bash "$(dirname "$0")/docker-deps.sh"
