#!/bin/sh
# Checks the running example end to end: two visits of `/` on web's published port, and
# the visit counter (kept in redis) must grow between them. With `kiln up` running:
#
#   sh examples/compose-like/check.sh          # WEB_PORT=18480 by default (kiln.toml's `ports`)
set -eu

port=${WEB_PORT:-18480}
url="http://127.0.0.1:$port/"

visits() {
  page=$(curl -fsS --max-time 5 "$url" 2>&1) || {
    echo "check: GET $url failed: $page" >&2
    echo "check: is \`kiln -C examples/compose-like up\` running, and web ready (\`kiln -C examples/compose-like status\`)?" >&2
    exit 1
  }
  n=$(printf '%s\n' "$page" | sed -n 's/^visits: \([0-9][0-9]*\)$/\1/p')
  if [ -z "$n" ]; then
    echo "check: GET $url answered without a \`visits: N\` line:" >&2
    printf '%s\n' "$page" >&2
    exit 1
  fi
  echo "$n"
}

first=$(visits)
second=$(visits)
if [ "$second" -le "$first" ]; then
  echo "check: the visit counter did not grow: $first, then $second" >&2
  exit 1
fi
echo "ok: visits $first → $second"
