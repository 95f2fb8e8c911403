#!/usr/bin/env bash
# Makes the container image localhost/kiln-debian-base:bookworm, a minimal Debian 12, once
# per machine: `debootstrap --variant=minbase bookworm`, then `podman import`. Examples
# (examples/compose-like) build their images FROM it, as no image can be pulled from a
# registry. Idempotent and quiet: when the image exists, it does nothing and prints nothing.
#
#   bash scripts/debian-base.sh
#
# Environment: KILN_DEBIAN_MIRROR (default http://deb.debian.org/debian), the mirror
# debootstrap downloads from and that the image's apt uses.
set -euo pipefail

image=localhost/kiln-debian-base:bookworm
mirror=${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}

fail() {
  echo "error: debian-base: $*" >&2
  exit 1
}

command -v podman >/dev/null 2>&1 ||
  fail "podman is not installed; run \`bash scripts/install-deps.sh\` (Debian) and try again"
if podman image exists "$image"; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] ||
  fail "$image does not exist, and making it (debootstrap) needs root: run this script as root once"

# Two runs at once (two terminals, two test jobs) make the image once: the second waits.
exec 9>/var/lock/kiln-debian-base.lock
flock 9
if podman image exists "$image"; then
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap; } >/dev/null 2>&1 ||
    fail "debootstrap is missing and \`apt-get install debootstrap\` failed; install it and try again"
fi

tmp=$(mktemp -d /var/tmp/kiln-debian-base.XXXXXX)
cleanup() {
  # debootstrap mounts /proc and /sys inside the tree and may leave them mounted when it
  # fails: unmount those (deepest first) before removing, and never cross into a mount.
  if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then
    awk -v dir="$tmp/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf --one-file-system "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

start=$(date +%s)
echo "making $image (debootstrap --variant=minbase bookworm from $mirror; a few minutes, once per machine)"
if ! debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
  tail -n 20 "$tmp/debootstrap.log" >&2
  fail "debootstrap of bookworm from $mirror failed (its last lines are above); check that the machine reaches the mirror, or set KILN_DEBIAN_MIRROR"
fi
# Leave out the downloaded packages: apt in an image build fetches what it installs.
rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"* "$tmp/root/var/log/"*.log

if ! tar -C "$tmp/root" --numeric-owner -cf - . |
  podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
    --message "debootstrap --variant=minbase bookworm $mirror" - "$image" >"$tmp/import.log" 2>&1; then
  cat "$tmp/import.log" >&2
  fail "podman import of the debootstrapped tree as $image failed (its output is above)"
fi
echo "made $image in $(($(date +%s) - start)) s"
