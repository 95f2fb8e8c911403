#!/usr/bin/env bash
# Runs the whole test suite: unit and integration tests of every crate, then a small run
# of the benchmark harness (kiln against ninja) to prove it works end to end.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo test --workspace --quiet 2>&1
cargo build --quiet -p kiln -p kiln-bench
./target/debug/kiln-bench build --kiln target/debug/kiln --targets 60 --files 3 --runs 1 --check
