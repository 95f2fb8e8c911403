#!/usr/bin/env bash
# The build benchmark of the README: a synthetic workspace of N targets in 10 layers, each
# with F input files, built by kiln and by ninja in the same run; medians of R runs of a
# cold build, a no-op build, a one-file content edit and a touch-only edit.
#
#   bash bench/build.sh [--targets N] [--files F] [--runs R]     (defaults: 1000, 20, 5)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --quiet -p kiln -p kiln-bench
./target/release/kiln-bench build --kiln target/release/kiln "$@"
