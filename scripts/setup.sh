#!/usr/bin/env bash
# Set up everything migplan needs on a Debian machine: the libvirt/QEMU Debian
# packages (installed when missing and running as root), a virtualenv in .venv
# and the package itself (editable, with the dev tools).  Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config
              qemu-system-x86 qemu-utils gcc python3-venv)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${DEB_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      # python3-venv is not needed when the interpreter already has venv (pyenv builds)
      if [ "$p" = python3-venv ] && python3 -c 'import venv, ensurepip' 2>/dev/null; then continue; fi
      if [ "$p" = gcc ] && command -v cc >/dev/null 2>&1; then continue; fi
      missing+=("$p")
    fi
  done
else
  for b in virsh libvirtd qemu-system-x86_64 pkg-config; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
  done
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Error: missing Debian packages: ${missing[*]}" >&2
    echo "       install them as root: apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.migplan-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
