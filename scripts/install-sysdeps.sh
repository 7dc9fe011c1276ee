#!/usr/bin/env bash
# Installs the Debian packages the integration tests start for real: Prometheus (with
# promtool) and Alertmanager (with amtool); and strace, with which the durability tests watch
# state files reach the disk. Does nothing when they are already present.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v strace >/dev/null 2>&1 || need+=(strace)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing ${need[*]}: run 'sudo apt-get install -y ${need[*]}' (tests that need them will fail)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages' own services must not run: tests start their own on 127.0.0.1.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  pkill -x "${svc##*-}" 2>/dev/null || true
done
echo "installed: ${need[*]}"
