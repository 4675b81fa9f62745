#!/bin/bash
# session 13 call 8: residual_matvec_decode_{3,5,10} at the driver's carve-out (not the smallest) vs base 70a626e
set -u
R=$OUT/c8; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
N=.carry-k/qwen-rs; B=.carry-x/qwen-rs-base
b() { local label=$1 shape=$2; shift 2; "$@" bench --shape $shape > $R/bench-$shape-$label.json 2> $R/bench-$shape-$label.txt; echo "== $shape $label"; grep -E "^  decode" $R/bench-$shape-$label.txt; }
for i in 1 2; do b base-$i 0.5b $B; b new-$i 0.5b $N; done
for i in 1 2; do b base-$i 1.5b $B; b new-$i 1.5b $N; done
(cd $OUT && tar czf c8.tgz c8 && rm -rf c8)
