#!/usr/bin/env bash
# A Debian 12 chroot with libvirt 11.3 (bookworm-backports): the second oracle of the CPU
# tests (issue 13).  `virsh -c test:///default cpu-baseline` runs in-process there, no daemon.
#
#   scripts/libvirt_oracle.sh [DIR]     build it (once; cached), print DIR
#
# DIR defaults to $MIGPLAN_ORACLE_CHROOT or ~/.cache/migplan/libvirt-11.3.  Needs root,
# debootstrap (installed when missing) and the Debian mirror.  Backports are added inside
# the chroot only.  Run a command in it: chroot DIR virsh -c test:///default cpu-baseline F
set -euo pipefail
DIR=${1:-${MIGPLAN_ORACLE_CHROOT:-$HOME/.cache/migplan/libvirt-11.3}}
MIRROR=${MIGPLAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
WANT=11.3

if [ -x "$DIR/usr/bin/virsh" ] && [ -f "$DIR/.migplan-oracle-ok" ]; then
  echo "$DIR"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "libvirt_oracle: needs root (debootstrap, chroot)" >&2; exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
fi
tmp="$DIR.building.$$"
rm -rf "$tmp"; mkdir -p "$(dirname "$DIR")"
trap 'rm -rf "$tmp"' EXIT
debootstrap --variant=minbase bookworm "$tmp" "$MIRROR" >&2
echo "deb $MIRROR bookworm-backports main" > "$tmp/etc/apt/sources.list.d/backports.list"
chroot "$tmp" apt-get update -q >&2
# libvirt0 carries the test driver (in-process) and /usr/share/libvirt/cpu_map
DEBIAN_FRONTEND=noninteractive chroot "$tmp" apt-get install -y -q --no-install-recommends \
  -t bookworm-backports libvirt-clients libvirt0 >&2
chroot "$tmp" apt-get clean >&2
got=$(chroot "$tmp" virsh --version)
case "$got" in
  "$WANT".*) ;;
  *) echo "libvirt_oracle: got libvirt $got, wanted $WANT.x" >&2; exit 3 ;;
esac
touch "$tmp/.migplan-oracle-ok"
rm -rf "$DIR"; mv "$tmp" "$DIR"; trap - EXIT
echo "$DIR"
