#!/usr/bin/env bash
# Sets everything up on a fresh Debian machine and runs kiln's main job on an example:
# installs what is missing, builds kiln, and builds examples/plugins with it (twice, to
# show the second build doing nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --quiet -p kiln
kiln=target/release/kiln

echo "\$ kiln -C examples/plugins build"
"$kiln" -C examples/plugins build
echo
echo "\$ kiln -C examples/plugins build   # again: nothing changed, nothing runs"
"$kiln" -C examples/plugins build
