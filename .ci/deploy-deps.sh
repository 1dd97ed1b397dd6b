#!/usr/bin/env bash
# Installs promtool (Debian's prometheus package) for `npm run check:deploy` and test/deploy, if missing.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
run() { if command -v flock >/dev/null 2>&1; then flock /tmp/apt.lock "$@"; else "$@"; fi; }
run apt-get update -qq >/dev/null
# --no-install-recommends keeps it to the prometheus binaries; the service is not started in containers.
run apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
