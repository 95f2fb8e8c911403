#!/usr/bin/env bash
# Installs the system packages kiln's examples, tests and benchmarks use, if missing.
# Idempotent and quiet: packages already present are not touched.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Containers: podman with runc (crun refuses the cgroup layout of many VMs), busybox-static
# for images built FROM scratch (nothing is pulled from a registry), and a docker CLI for
# the docker path, which the tests point at podman's Docker-compatible service.
# Podman is installed with its recommended packages: they bring its network stack.
with_recommends=()
command -v podman >/dev/null 2>&1 || with_recommends+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
# GET /metrics: `promtool check metrics` and a real Prometheus scraping kiln in the tests.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The dashboard's browser test: Debian's chromium, driven by playwright-core under node.
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# ss -K: the browser test cuts the page's connections to see it resume.
command -v ss >/dev/null 2>&1 || need+=(iproute2)
# The CloudEvents receiver of the events sink tests: Python with venv (scripts/python-venv.sh).
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3 python3-venv)

if ((${#need[@]} + ${#with_recommends[@]})); then
  echo "installing: ${need[*]} ${with_recommends[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: these packages are missing and installing them needs root: ${need[*]} ${with_recommends[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  if ((${#need[@]})); then
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if ((${#with_recommends[@]})); then
    apt-get install -y -qq "${with_recommends[@]}" >/dev/null
  fi
fi

# Podman on Debian 12 in a VM: the default ulimits cannot be raised there, and crun
# refuses the hybrid cgroup layout; runc works.
conf=/etc/containers/containers.conf
if ! grep -q '^runtime = "runc"' "$conf" 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: $conf needs runtime = \"runc\" and default_ulimits = [] (see DESIGN.md); writing it needs root" >&2
    exit 1
  fi
  mkdir -p /etc/containers
  if [ -s "$conf" ]; then
    echo "error: $conf exists without runtime = \"runc\"; add it under [engine] and default_ulimits = [] under [containers]" >&2
    exit 1
  fi
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$conf"
fi

# tests/browser's node_modules (playwright-core, pinned in package-lock.json; it uses the
# system's chromium and downloads no browser): installed when missing or older than the lock.
browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
stamp="$browser_dir/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$browser_dir/package-lock.json" -nt "$stamp" ]; then
  echo "installing: tests/browser's node packages (npm ci)"
  (cd "$browser_dir" && npm ci --silent --no-audit --no-fund >/dev/null) || {
    echo "error: \`npm ci\` in $browser_dir failed; the dashboard's browser test needs playwright-core from the npm registry" >&2
    exit 1
  }
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; kiln needs a Rust toolchain (1.88 or newer)" >&2
  exit 1
fi

# The CloudEvents Python SDK, in a virtualenv under target/ (after the packages above).
"$(dirname "${BASH_SOURCE[0]}")/python-venv.sh"

