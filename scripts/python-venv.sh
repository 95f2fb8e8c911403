#!/usr/bin/env bash
# Makes the Python virtualenv the tests' CloudEvents receiver runs in
# (crates/kiln/tests/sink/receiver.py): target/python-venv with the CloudEvents Python SDK.
# Idempotent and quiet: a venv that already has the pinned SDK is left as it is.
set -euo pipefail

CLOUDEVENTS_VERSION=2.2.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/python-venv"
python="$venv/bin/python"

has_sdk() {
  [ -x "$python" ] && "$python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('cloudevents') != '$CLOUDEVENTS_VERSION')" 2>/dev/null
}

if has_sdk; then
  exit 0
fi
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "error: /usr/bin/python3 cannot make a virtualenv; install python3-venv (scripts/install-deps.sh does)" >&2
  exit 1
fi
mkdir -p "$root/target"
/usr/bin/python3 -m venv "$venv"
"$python" -m pip install -q --disable-pip-version-check "cloudevents==$CLOUDEVENTS_VERSION"
if ! has_sdk; then
  echo "error: cloudevents==$CLOUDEVENTS_VERSION did not install into $venv" >&2
  exit 1
fi
