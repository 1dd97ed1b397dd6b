#!/usr/bin/env bash
# Installs what the failover tests and bench need when missing: etcd (Debian's etcd-server),
# an authoritative DNS server for RFC 2136 tests (knot) and nsupdate (bind9-dnsutils).
# Idempotent and quiet when everything is there; safe to call from test helpers.
set -u
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || [ -x /usr/bin/etcdctl ] || need+=(etcd-client)
command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || need+=(knot)
command -v nsupdate >/dev/null 2>&1 || need+=(bind9-dnsutils)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "etcd-deps: missing ${need[*]} and not root; install them with apt-get" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
run() { if command -v flock >/dev/null 2>&1; then flock /tmp/apt.lock "$@"; else "$@"; fi; }
run apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
  run apt-get update >/dev/null 2>&1
  run apt-get install -y --no-install-recommends "${need[@]}" >/dev/null || exit 1
}
# Debian's packages start system services; the tests run their own instances on random ports.
for svc in etcd knot; do
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done
exit 0
