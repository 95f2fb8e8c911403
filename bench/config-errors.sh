#!/usr/bin/env bash
# Rendering a kiln.toml with thousands of mistakes: N targets, each with one error of one of
# five kinds (an unknown key, an unknown dependency — whose "did you mean" searches every
# target name —, a bad duration, a bad glob, a wrong type). Prints the median wall time of R
# runs of `kiln build` (which stops at the errors), how many errors were shown, and the
# closing lines. Nothing is built.
#
#   bash bench/config-errors.sh [--kiln PATH] [--targets N] [--runs R]   (defaults: target/debug/kiln, 5000, 5)
set -euo pipefail
cd "$(dirname "$0")/.."

kiln=target/debug/kiln
targets=5000
runs=5
while [ $# -gt 0 ]; do
    case "$1" in
        --kiln) kiln=$2; shift 2 ;;
        --targets) targets=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "unknown argument $1 (use --kiln PATH, --targets N, --runs R)" >&2; exit 2 ;;
    esac
done
if [ ! -x "$kiln" ]; then
    echo "no kiln binary at $kiln: run \`cargo build -p kiln\` or pass --kiln PATH" >&2
    exit 2
fi
kiln=$(realpath "$kiln")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$targets" > "$work/kiln.toml" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    print(f"[target.t{i}]")
    print('cmd = "true"')
    print([
        "dpes = []",
        f'deps = ["missing{i}"]',
        'timeout = "10 minutes"',
        'inputs = ["src/[a"]',
        'retries = "two"',
    ][i % 5])
PY

python3 - "$kiln" "$work" "$runs" "$targets" <<'PY'
import statistics, subprocess, sys, time
kiln, work, runs, targets = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
times = []
for _ in range(runs):
    start = time.perf_counter()
    out = subprocess.run([kiln, "build"], cwd=work, capture_output=True, text=True, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    times.append(time.perf_counter() - start)
    assert out.returncode == 2, f"expected exit code 2, got {out.returncode}: {out.stderr[-500:]}"
shown = sum(1 for line in out.stderr.splitlines() if line.startswith("error: ") and " has " not in line)
print(f"{targets} bad targets ({sum(1 for _ in open(work + '/kiln.toml'))} lines): median {statistics.median(times):.3f} s over {runs} runs (min {min(times):.3f}, max {max(times):.3f})")
print(f"errors shown: {shown}; stderr: {len(out.stderr.splitlines())} lines")
print("last lines:", *out.stderr.rstrip().splitlines()[-3:], sep="\n  ")
PY
