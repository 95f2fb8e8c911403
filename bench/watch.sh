#!/usr/bin/env bash
# The watch benchmark of the README: kiln up against watchexec in the same run — latency
# from a file write to the start of the command (median and p95 of 30 trials, beyond the
# 50 ms debounce), time from start until a change is first detected on a 100,000-file tree,
# CPU used while idle for 60 s watching that tree, and peak RSS.
#
#   bash bench/watch.sh [--trials N] [--tree-files N] [--idle SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if ! command -v watchexec >/dev/null 2>&1; then
  echo "installing watchexec-cli with cargo (a few minutes, once)…"
  cargo install --quiet --locked watchexec-cli
fi
cargo build --release --quiet -p kiln -p kiln-bench
./target/release/kiln-bench watch --kiln target/release/kiln --watchexec "$(command -v watchexec)" "$@"
