#!/usr/bin/env bash
# One-time setup for building and testing qwen-rs on a Debian-like machine (CI runs this too):
#   1. the pinned nightly toolchain with the components the nvptx kernel build needs;
#   2. libcuda (Debian's non-free libcuda1) where no NVIDIA driver provides it: cust links it,
#      and without a GPU it reports "no device" at run time, so qwen-rs falls back to the CPU;
#   3. ptxas (from PyPI's nvidia-cuda-nvcc-cu12 wheel) for scripts/check-ptx.sh;
#   4. the default model, fetched, verified and cached by qwen-rs itself.
# Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
TOOLS="${QWEN_RS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qwen-rs}/tools"

echo "== toolchain $TOOLCHAIN"
if ! command -v rustup >/dev/null; then
    echo "rustup is not installed: install it first (https://rustup.rs), then rerun $0" >&2
    exit 1
fi
rustup toolchain install "$TOOLCHAIN" --profile minimal \
    -c rust-src -c llvm-tools -c llvm-bitcode-linker -c rustfmt -c clippy

echo "== libcuda"
if ldconfig -p | grep -q 'libcuda\.so\.1'; then
    echo "libcuda.so.1 is present"
else
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # The same mirrors as the system's own sources, with the contrib and non-free components.
        sed 's/^Components: .*/Components: contrib non-free/' /etc/apt/sources.list.d/debian.sources |
            $SUDO tee /etc/apt/sources.list.d/qwen-rs-nonfree.sources >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
        sed -n 's/^\(deb [^ ]* [^ ]*\) .*/\1 contrib non-free/p' /etc/apt/sources.list |
            $SUDO tee /etc/apt/sources.list.d/qwen-rs-nonfree.list >/dev/null
    else
        echo "no apt sources found: install your distribution's libcuda (NVIDIA driver user-space library)" >&2
        exit 1
    fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends libcuda1
fi

echo "== ptxas"
if command -v ptxas >/dev/null || [ -x "$TOOLS/ptxas" ]; then
    echo "ptxas is present"
else
    mkdir -p "$TOOLS"
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" nvidia-cuda-nvcc-cu12==12.9.86
    python3 - "$tmp" "$TOOLS" <<'PY'
import glob, os, sys, zipfile
whl = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    data = z.read("nvidia/cuda_nvcc/bin/ptxas")
out = os.path.join(sys.argv[2], "ptxas")
open(out, "wb").write(data)
os.chmod(out, 0o755)
PY
    rm -rf "$tmp"
    echo "ptxas installed in $TOOLS"
fi

echo "== default model"
cargo run --release --locked --quiet -- fetch
