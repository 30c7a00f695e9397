#!/usr/bin/env bash
# Install the Debian packages smelt needs to build, test and run, when missing.
# Safe to run repeatedly; does nothing when everything is present.
set -eu

packages=(
  build-essential cmake pkg-config
  libncurses-dev ncurses-term libcjson-dev libopenblas-dev libcurl4-openssl-dev
  libssl-dev libyaml-dev
  tmux nginx python3 python3-numpy clang libclang-rt-14-dev bc time strace
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "smelt: missing Debian packages: ${missing[*]}" >&2
    echo "smelt: run as root:  apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi

echo "smelt: installing ${missing[*]}" >&2
# nginx must never start Debian's default site on port 80: forbid service
# starts while packages are configured, then remove the override.
policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
if [ $had_policy -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
fi
cleanup() { [ $had_policy -eq 0 ] && $SUDO rm -f "$policy"; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# If a service manager started nginx anyway, stop it: tests run their own.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
if [ -e /run/nginx.pid ]; then
  $SUDO nginx -s stop >/dev/null 2>&1 || true
fi
