#!/usr/bin/env bash
# Installs the Debian packages loopgate builds and runs against. Idempotent:
# packages already installed are not touched, and apt-get runs only when
# something is missing.
set -euo pipefail

packages=(
  build-essential pkg-config dpkg-dev
  libdlib-dev libdlib-data            # go-face's C++ side; libdlib-data ships the 68-point landmark model
  libatlas-base-dev libblas-dev liblapack-dev  # go-face links -lblas -lcblas -llapack; only ATLAS provides libcblas
  libjpeg62-turbo-dev                 # go-face decodes JPEG itself
  libopencv-dev                       # OpenCV 4.6 (bookworm): gocv v0.32.0 is the newest release that builds on it
  postgresql-15 postgresql-server-dev-15
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} Debian packages already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

echo "deps: installing ${#missing[@]} missing Debian packages: ${missing[*]}"
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps: installed in $(( $(date +%s) - start )) s"
