#!/usr/bin/env bash
# Runs the whole test suite: unit and integration tests of every crate (the container tests
# need podman, which install-deps installs), then small runs of the benchmark harnesses
# (kiln against ninja; kiln against the same container work done by hand; live update
# against podman cp) to prove they work end to end.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo test --workspace --quiet 2>&1
cargo build --quiet -p kiln -p kiln-bench
./target/debug/kiln-bench build --kiln target/debug/kiln --targets 60 --files 3 --runs 1 --check
./target/debug/kiln-bench container --kiln target/debug/kiln --example examples/plugins-containers --trials 2 --check
./target/debug/kiln-bench live-update --kiln target/debug/kiln --check
