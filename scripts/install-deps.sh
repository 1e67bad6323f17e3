#!/usr/bin/env bash
# Installs the Debian 12 packages karvon builds, runs and tests with.
# This is the only place a package is named. Packages already present are
# skipped, so a second run costs one dpkg query and no network.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config make
  # libraries
  libcaf-dev
  libboost-dev libboost-system-dev
  libpqxx-dev libpq-dev
  nlohmann-json3-dev
  libspdlog-dev libfmt-dev
  libcli11-dev
  libtomlplusplus-dev
  libsodium-dev
  libssl-dev ca-certificates
  libxxhash-dev
  libutf8proc-dev
  libgtest-dev libgmock-dev
  # the embedded database: Debian's PostgreSQL 15 server binaries
  postgresql-15 postgresql-client-15
  # passwd: the postgres user; acl: letting it reach a data folder under /root
  passwd acl
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root (or: sudo $0)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
