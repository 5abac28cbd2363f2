#!/usr/bin/env bash
# Checks that every package launch/setup.sh installs (launch/debian-packages.txt) exists in the
# given Debian suites, read from their package indexes on a Debian mirror (needs network; not part
# of the test suite). Exit 1 naming each missing package and suite.
#   launch/check_debian_packages.sh [SUITE ...]      (default: bookworm trixie, Debian 12 and 13)
# Environment: SDTRAIN_DEBIAN_MIRROR (default http://deb.debian.org/debian), SDTRAIN_DEBIAN_ARCH
# (default amd64).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${SDTRAIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
arch=${SDTRAIN_DEBIAN_ARCH:-amd64}
suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(bookworm trixie)
mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$repo/launch/debian-packages.txt")
status=0
for suite in "${suites[@]}"; do
  # Names a suite offers: real packages and the virtual names they provide.
  names=$(curl -fsSL "$mirror/dists/$suite/main/binary-$arch/Packages.xz" | xz -dc |
          awk -F': ' '/^Package: /{print $2} /^Provides: /{n=split($2,p,", "); for(i=1;i<=n;i++){sub(/ .*/,"",p[i]); print p[i]}}' |
          sort -u)
  missing=()
  for package in "${packages[@]}"; do
    grep -qxF "$package" <<<"$names" || missing+=("$package")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "$suite: all ${#packages[@]} packages exist"
  else
    echo "$suite: missing ${missing[*]}"
    status=1
  fi
done
exit $status
