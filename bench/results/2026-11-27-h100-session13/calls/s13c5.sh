#!/bin/bash
# session 13 call 5: down product with the block's whole row in flight (QWEN_RS_RES=threads; scratch switch), qkv_attention with 16 warps (scratch build w16)
set -u
R=$OUT/c5; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
N=.carry-k/qwen-rs
b() { local label=$1 shape=$2; shift 2; "$@" bench --shape $shape > $R/bench-$shape-$label.json 2> $R/bench-$shape-$label.txt; echo "== $shape $label"; grep -E "^  decode" $R/bench-$shape-$label.txt; }
for i in 1 2; do
  b base-$i 0.5b $N
  b res128-$i 0.5b env QWEN_RS_RES=128 $N
  b res256-$i 0.5b env QWEN_RS_RES=256 $N
  b res512-$i 0.5b env QWEN_RS_RES=512 $N
  b w16-$i 0.5b .carry-x/qwen-rs-w16
done
for i in 1 2; do
  b base-$i 1.5b $N
  b res128-$i 1.5b env QWEN_RS_RES=128 $N
  b res256-$i 1.5b env QWEN_RS_RES=256 $N
  b res512-$i 1.5b env QWEN_RS_RES=512 $N
done
(cd $OUT && tar czf c5.tgz c5 && rm -rf c5)
