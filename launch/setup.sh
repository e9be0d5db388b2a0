#!/usr/bin/env bash
# Sets up tpserve on a Debian machine: installs the Debian packages it needs (only those missing;
# safe to run again), then configures and builds into build/. The CUDA backend is built too where
# the CUDA toolkit is installed (/usr/local/cuda), for sm_80 and sm_90.
#
#   bash launch/setup.sh            # Release build in build/
#   BUILD_DIR=out bash launch/setup.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}

packages=(
  cmake ninja-build g++ pkg-config
  libopenmpi-dev openmpi-bin
  libopenblas-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev
  libpcre2-dev libsentencepiece-dev libutf8proc-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libcpp-httplib-dev
  gnuplot-nox  # launch/plot_scaling.sh
  clang libclang-rt-dev  # tests/fuzz/run.sh: libFuzzer, ASan and UBSan runtimes (Debian 12: clang 14)
  iproute2 nftables slurmctld slurmd slurm-client  # tests/launch/{multinode,slurm}_e2e.sh
  iptables libnetfilter-queue-dev  # tests/launch/link_delay.cc: 20 ms on a link where the kernel has no sch_netem
  python3-venv openssl  # tests/rpc/http_e2e.sh: a virtualenv for the openai client; a TLS cert
  chromium chromium-driver python3-selenium fonts-wqy-microhei  # tests/rpc/chat_page_e2e.sh: the web chat page (and a CJK font for its screenshot)
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release}
cmake --build "$build_dir" --parallel "$(nproc)"
echo "setup: built $build_dir/launch/tpserve"
