#!/bin/bash
# session 12, call 7: ncu of the prompt kernels, base (4b5a5bb) vs new (cb443b5): third 512- and third 2048-token prompt of bench --shape 0.5b
set -u
R=$OUT/r; mkdir -p $R
B=.carry-base/qwen-rs; N=.carry/qwen-rs
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
N2="ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv"
K='embedding|rmsnorm|matmul|rope|attention_prefill|lm_head'
timeout 100 $N2 -k regex:"$K" --launch-skip $((7*194)) --launch-count 194 $N bench --shape 0.5b > $R/ncu-512-new.csv 2>/dev/null
timeout 100 $N2 -k regex:"$K" --launch-skip $((7*194)) --launch-count 194 $B bench --shape 0.5b > $R/ncu-512-base.csv 2>/dev/null
timeout 120 $N2 -k regex:"$K" --launch-skip $((10*194)) --launch-count 194 $N bench --shape 0.5b > $R/ncu-2048-new.csv 2>/dev/null
timeout 120 $N2 -k regex:"$K" --launch-skip $((8*194+2*386)) --launch-count 386 $B bench --shape 0.5b > $R/ncu-2048-base.csv 2>/dev/null
QWEN_RS_CHUNK=1024 timeout 120 $N2 -k regex:"$K" --launch-skip $((8*194+2*386)) --launch-count 386 .carry-x/qwen-rs-toggles bench --shape 0.5b > $R/ncu-2048-new-chunk1024.csv 2>/dev/null
cd $OUT && tar czf r.tgz r && rm -rf r
