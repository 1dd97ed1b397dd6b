#!/usr/bin/env bash
# Tools the backup tests need beyond PostgreSQL's own (pg_basebackup, pg_receivewal, pg_verifybackup, pg_dump
# come with the server package): lz4 unpacks server-side lz4 base backups; tar unpacks every base backup.
# pgbackrest is only for `npm run bench:backup` (which installs it itself when run as root).
set -u
missing=()
command -v lz4 >/dev/null 2>&1 || missing+=(lz4)
command -v tar >/dev/null 2>&1 || missing+=(tar)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "backup deps: installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }) >/dev/null
  else
    echo "backup deps: not root; install ${missing[*]} by hand" >&2
  fi
fi
command -v lz4 >/dev/null 2>&1 && echo "backup deps: ok" || { echo "backup deps: lz4 missing"; exit 1; }
