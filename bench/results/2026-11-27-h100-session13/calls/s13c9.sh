#!/bin/bash
# session 13 call 9: qkv_attention_decode_64 with 4 / 8 (HEAD 53ece9a) / 16 positions a warp step
set -u
R=$OUT/c9; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
b() { local label=$1 shape=$2; shift 2; "$@" bench --shape $shape > $R/bench-$shape-$label.json 2> $R/bench-$shape-$label.txt; echo "== $shape $label"; grep -E "^  decode" $R/bench-$shape-$label.txt; }
for i in 1 2; do b s8-$i 0.5b .carry-k/qwen-rs; b s16-$i 0.5b .carry-x/qwen-rs-s16; b s4-$i 0.5b .carry-x/qwen-rs-s4; done
(cd $OUT && tar czf c9.tgz c9 && rm -rf c9)
