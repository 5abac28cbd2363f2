#!/usr/bin/env bash
# Unpacks the device bundle's Debian packages (launch/gpu/fetch_bundle.sh) into ROOT on the lent
# GPU machine: dpkg -x every .deb (never into /); merge Debian 12's split /lib into /usr/lib and
# make absolute dev links relative; drop the runtime libraries the machine already has (same
# soname in its linker cache), except Open MPI with PMIx/hwloc/libevent/UCX/libfabric/PSM,
# protobuf and boost, which always come from the bundle; point the dev links of what was dropped
# at the machine's copies; the mpirun/mpicxx links Debian makes with update-alternatives; .pc
# files relocated into ROOT/pkgconfig. Idempotent: a stamp of the MANIFEST and this script skips
# the work when ROOT already is what they describe (~10 s otherwise).
#   launch/gpu/unpack_bundle.sh BUNDLE ROOT
# Environment: SDTRAIN_BUNDLE_KEEP_ALL=1 keeps every bundled runtime library.
set -euo pipefail

bundle=${1:?usage: unpack_bundle.sh BUNDLE ROOT}
root=${2:?usage: unpack_bundle.sh BUNDLE ROOT}
say() { printf '[unpack_bundle] %s\n' "$*" >&2; }
[[ -f $bundle/MANIFEST ]] || { say "no $bundle/MANIFEST: run launch/gpu/fetch_bundle.sh first and carry .device-bundle"; exit 1; }

lib=$root/usr/lib/x86_64-linux-gnu
stamp=$( (cat "$bundle/MANIFEST" "${BASH_SOURCE[0]}"; echo "keep_all=${SDTRAIN_BUNDLE_KEEP_ALL:-0}") | sha256sum | cut -d' ' -f1)
if [[ ! -f $root/.unpacked || $(cat "$root/.unpacked") != "$stamp" ]]; then
  say "unpacking $(ls "$bundle"/debs/*.deb | wc -l) .deb files into $root"
  rm -rf "$root"
  mkdir -p "$root"
  for deb in "$bundle"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  # Debian 12 still splits /lib from /usr/lib: merge, and make absolute dev links relative.
  if [[ -d $root/lib/x86_64-linux-gnu ]]; then cp -a "$root/lib/x86_64-linux-gnu/." "$lib/"; rm -rf "$root/lib"; fi
  for link in "$lib"/*; do
    [[ -L $link ]] || continue
    target=$(readlink "$link")
    if [[ $target =~ ^/(usr/)?lib/x86_64-linux-gnu/([^/]+)$ && -e $lib/${BASH_REMATCH[2]} ]]; then
      ln -sfn "${BASH_REMATCH[2]}" "$link"
    fi
  done
  # Prefer the machine's own copy of a standalone runtime library (newer there, and a bundled older
  # one on LD_LIBRARY_PATH would shadow it for python and every other program).
  pruned=()
  if [[ ${SDTRAIN_BUNDLE_KEEP_ALL:-0} != 1 ]]; then
    ldcache=$(ldconfig -p 2>/dev/null | awk '/x86-64/ {print $1, $NF}') || ldcache=
    declare -A resolves=()
    for link in "$lib"/*; do [[ -L $link ]] && resolves[$link]=$(readlink -f "$link"); done
    for file in "$lib"/lib*.so.*; do
      [[ -f $file && ! -L $file ]] || continue
      soname=$(readelf -d "$file" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p') || soname=
      case $soname in
        "" | libprotobuf* | libprotoc* | libboost* | libhwloc* | libevent* | libpmix* | libmpi* | libopen-* | \
        libmca_* | libompitrace* | liboshmem* | libuc[mpst]* | libfabric* | libpsm* | libinfinipath*) continue ;;
      esac
      system=$(awk -v s="$soname" '$1 == s {print $2; exit}' <<<"$ldcache")
      [[ -n $system && -e $system && $system != "$root"/* ]] || continue
      # its soname links go; its dev link (libfoo.so) stays, to be pointed at the machine's below
      for link in "${!resolves[@]}"; do [[ ${resolves[$link]} == "$file" && $link != *.so ]] && rm -f "$link"; done
      rm -f "$file"
      pruned+=("$soname")
    done
  fi
  # Dev links (libz.so, libcrypto.so, ...) whose library was pruned: point them at the machine's.
  for link in "$lib"/*.so; do
    [[ -L $link && ! -e $link ]] || continue
    stem=$(basename "$link")
    # awk reads to the end: leaving early would kill ldconfig with SIGPIPE, and under pipefail
    # the lookup would then fail at random.
    system=$(ldconfig -p 2>/dev/null | awk -v s="$stem." '/x86-64/ && index($1, s) == 1 && !found {print $NF; found = 1}') || system=
    if [[ -n $system ]]; then ln -sfn "$system" "$link"; fi
  done
  # Warned only now: a link to another dev link (libpng.so -> libpng16.so) resolves once that one
  # has been repointed.
  for link in "$lib"/*.so; do
    if [[ -L $link && ! -e $link ]]; then say "warning: $link dangles and the machine has no $(basename "$link").*"; fi
  done
  [[ ${#pruned[@]} -gt 0 ]] && say "taken from the machine instead of the bundle: ${pruned[*]}"
  # Debian makes these with update-alternatives, which dpkg -x does not run.
  for name in mpirun mpiexec mpicc mpicxx mpic++ mpiCC; do ln -sfn "$name.openmpi" "$root/usr/bin/$name"; done
  # pkg-config files with prefix=/usr (and literal /usr paths) rewritten into the bundle.
  mkdir -p "$root/pkgconfig"
  for pc in "$lib"/openmpi/lib/pkgconfig/*.pc "$lib"/pkgconfig/*.pc "$root"/usr/share/pkgconfig/*.pc; do
    [[ -e $pc ]] || continue
    sed -E "s#(=|-I|-L)/usr(/|\$|[[:space:]])#\\1$root/usr\\2#g" "$pc" >"$root/pkgconfig/$(basename "$pc")"
  done
  echo "$stamp" >"$root/.unpacked"
fi

