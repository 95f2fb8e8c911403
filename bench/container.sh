#!/usr/bin/env bash
# The container benchmark of the README: from saving a plugin's source to its replaced
# container answering with the new version, `kiln up` against the same steps done by hand
# with engine commands (cc, podman build, podman rm -f, podman run -d, poll), in the same
# run, trials alternating; medians of 10.
#
#   bash bench/container.sh [--trials N]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --quiet -p kiln -p kiln-bench
./target/release/kiln-bench container --kiln target/release/kiln --example examples/plugins-containers "$@"
