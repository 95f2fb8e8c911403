#!/usr/bin/env bash
# The live-update benchmark of the README: from saving a file under a sync rule to the
# container serving it (busybox httpd), `kiln up` against the same work done by hand with
# `podman cp` and with a tar piped into `podman exec -i … tar -x`, then polling, in the same
# run, methods alternating; one file, a 200-file batch and a deletion; medians of 20.
#
#   bash bench/live-update.sh [--trials N] [--check] [--by-hand-only]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --quiet -p kiln -p kiln-bench
./target/release/kiln-bench live-update --kiln target/release/kiln "$@"
