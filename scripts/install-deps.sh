#!/usr/bin/env bash
# Installs the system packages kiln's examples, tests and benchmarks use, if missing.
# Idempotent and quiet: packages already present are not touched.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)

if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: these packages are missing and installing them needs root: ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; kiln needs a Rust toolchain (1.88 or newer)" >&2
  exit 1
fi
