#!/usr/bin/env bash
# Installs the Debian packages loopgate builds and runs against, and selects
# OpenBLAS as the system's BLAS and LAPACK. Idempotent: packages already
# installed are not touched, apt-get runs only when something is missing,
# and the BLAS selection changes only when it is not OpenBLAS already.
set -euo pipefail

packages=(
  build-essential pkg-config dpkg-dev
  libdlib-dev libdlib-data            # go-face's C++ side; libdlib-data ships the 68-point landmark model
  libatlas-base-dev libblas-dev liblapack-dev  # go-face links -lblas -lcblas -llapack; only ATLAS provides libcblas.so
  libopenblas0-pthread                # the BLAS dlib runs on (see select_openblas below)
  libjpeg62-turbo-dev                 # go-face decodes JPEG itself
  libopencv-dev                       # OpenCV 4.6 (bookworm): gocv v0.32.0 is the newest release that builds on it
  postgresql-15 postgresql-server-dev-15
  chromium fonts-dejavu-core           # headless browser tests of the /live page (and the officers' page)
  prometheus                           # deploy/ tests: a real Prometheus scrapes a node; promtool checks the rules
  systemd                              # deploy/ tests: systemd-analyze verifies the units (nothing is started)
)

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} Debian packages already installed"
else
  echo "deps: installing ${#missing[@]} missing Debian packages: ${missing[*]}"
  start=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  echo "deps: installed in $(( $(date +%s) - start )) s"
fi

# select_openblas points libblas.so.3 and liblapack.so.3 at OpenBLAS.
#
# dlib's ResNet does its convolutions with cblas_sgemm, and dlib (and
# OpenCV's core) bind it from libblas.so.3, whichever library Debian's
# alternatives select: with libatlas-base-dev installed that is ATLAS. The
# loopgate binary does not load ATLAS's libcblas.so.3 at all: Debian's gcc
# links with --as-needed and go-face's -lblas comes before -lcblas, so every
# cblas_* symbol is found in libblas.so (all three Debian BLASes export them)
# and libcblas is dropped (ldd bin/loopgate: libblas.so.3, liblapack.so.3, no
# libcblas; LD_DEBUG=bindings: libdlib's cblas_sgemm bound to libblas.so.3).
# So switching libblas.so.3 alone switches dlib, and libcblas.so.3, which has
# no alternative, does not matter. ATLAS stays installed only because
# go-face's -lcblas needs a libcblas.so at link time.
#
# Measured on the 2-core build machine, other work running (go-face rows: go
# test -bench in benchmarks/, ATLAS through
# LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/atlas; ResNet row: dlib's
# network timed alone in a small C++ program):
#                                         ATLAS       OpenBLAS (1 thread)
#   ResNet alone, 150x150 chip (CPU)      27.8 ms     14.0-14.9 ms
#   go-face on a 309x387 face crop        40.5-41.1   27.1-27.9 ms
#   (HOG + landmarks + ResNet)
#   pool of 2 recognisers, embeddings/s   22-30       54-60
# (the reference BLAS: 131 ms for the ResNet alone). A second OpenBLAS thread
# nearly doubled the CPU per embedding and lowered the pool's throughput;
# loopgate sets one thread itself at start-up (internal/runtimetune), so no
# environment variable is needed.
#
# libopenblas0-pthread registers itself at priority 100 (ATLAS: 35), so auto
# mode already picks it; --set also overrides an earlier manual choice.
select_openblas() {
  local multiarch lib name want current
  multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
  for lib in libblas.so.3 liblapack.so.3; do
    name="$lib-$multiarch"
    want="/usr/lib/$multiarch/openblas-pthread/$lib"
    current=$(update-alternatives --query "$name" 2>/dev/null | awk '$1 == "Value:" {print $2}')
    if [ "$current" = "$want" ]; then
      continue
    fi
    if [ ! -e "$want" ]; then
      echo "deps: $want missing: is libopenblas0-pthread installed?" >&2
      return 1
    fi
    echo "deps: selecting OpenBLAS for $lib (was ${current:-unset})"
    "${sudo[@]}" update-alternatives --set "$name" "$want"
  done
}
select_openblas
echo "deps: BLAS/LAPACK: $(readlink -f "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/libblas.so.3")"
