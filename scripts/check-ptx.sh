#!/usr/bin/env bash
# Assembles the PTX embedded in the qwen-rs binary with ptxas for sm_80, sm_90 and sm_90a and fails on any
# error, on any register spill and on any local memory (a stack frame). Usage: scripts/check-ptx.sh [path/to/qwen-rs]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/qwen-rs}
TOOLS="${QWEN_RS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qwen-rs}/tools"
PTXAS=${PTXAS:-$(command -v ptxas || echo "$TOOLS/ptxas")}
[ -x "$PTXAS" ] || { echo "ptxas not found: run scripts/setup.sh or set PTXAS" >&2; exit 1; }
out=$(mktemp -d)
"$BIN" ptx "$out" >/dev/null
status=0
for arch in 80 90 90a; do
    ptx="$out/kernels_sm_$arch.ptx"
    [ -f "$ptx" ] || { echo "no PTX for sm_$arch in $BIN (QWEN_RS_CUDA_ARCHS?)" >&2; status=1; continue; }
    if ! log=$("$PTXAS" -arch=sm_$arch -v "$ptx" -o "$out/sm_$arch.cubin" 2>&1); then
        echo "$log" >&2
        echo "ptxas failed for sm_$arch" >&2
        status=1
        continue
    fi
    kernels=$(grep -c "Compiling entry function" <<<"$log" || true)
    spills=$(grep -E "[1-9][0-9]* bytes (spill (stores|loads)|stack frame|cumulative stack size)" <<<"$log" || true)
    if [ -n "$spills" ]; then
        echo "$log" | grep -E "Compiling entry|spill" >&2
        echo "register spills or local memory in sm_$arch kernels" >&2
        status=1
    else
        echo "sm_$arch: $kernels kernels assembled, no spills, no local memory"
    fi
done
rm -rf "$out"
exit $status
