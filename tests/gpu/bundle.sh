#!/usr/bin/env bash
# Packs a build of tpserve, with the Debian libraries it needs and Open MPI's runtime, into one
# tarball that runs on a GPU machine which has the NVIDIA driver and CUDA libraries but none of our
# Debian -dev packages (no apt there). Used to run the GPU tests and benchmarks on a lent machine:
#
#   bash tests/gpu/bundle.sh build .gpu/bundle.tar.xz     # here
#   bash tests/gpu/run.sh .gpu/bundle.tar.xz OUT_DIR       # there (see run.sh)
#
# Libraries go to /opt/tpserve/lib on the target (used through LD_LIBRARY_PATH, never over the
# system's own); Open MPI and PMIx keep their Debian paths because their plugin paths are built in.
# glibc, libstdc++ and the CUDA libraries are left out: the target's own are used.
set -euo pipefail
build=${1:?build dir}
tarball=${2:?output tarball}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage/opt/tpserve/bin" "$stage/opt/tpserve/lib"
binaries=("$build/launch/tpserve" "$build/tests/tpserve_unit_tests" "$build/tests/tpserve_mpi_tests"
          "$build/lib/libtpserve_sentencepiece.so")
cp "${binaries[@]}" "$stage/opt/tpserve/bin/"
# Without their DWARF sections (symbols stay): a RelWithDebInfo build's test binaries carry ~150 MB
# of it, which makes the tarball (88 MB against 24 MB) too big to carry to a device machine (64 MiB).
strip -g "$stage"/opt/tpserve/bin/*

mpi_paths=(/usr/bin/orterun /usr/bin/orted /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2
           /usr/share/openmpi /etc/openmpi)
for path in "${mpi_paths[@]}"; do
  mkdir -p "$stage$(dirname "$path")"
  cp -a "$path" "$stage$path"
done

# Every shared library any bundled ELF file needs, but the target's own system and CUDA ones.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libnccl|libnvidia)'
find "$stage" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
  xargs -0 ldd 2>/dev/null | awk '/=> \// {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ $name =~ $skip ]] && continue
    cp -L "$path" "$stage/opt/tpserve/lib/$name"
  done
tar -C "$stage" -cJf "$tarball" --owner=0 --group=0 .
echo "bundle: $tarball ($(du -h "$tarball" | cut -f1))"
