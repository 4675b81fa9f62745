#!/bin/bash
# session 13 call 3: per-phase clock64 timings of attention_block_decode_64 inside the decode graph (layer 5, thread 0 of each block; scratch build)
set -u
R=$OUT/c3; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
QWEN_RS_DUMP_TIMES=1 .carry-x/qwen-rs-times bench --shape 0.5b > $R/times.json 2> $R/times.txt
grep -E "^  decode" $R/times.txt; grep globaltimer $R/times.txt | sed -n '3p;10p;20p;40p;60p'
grep globaltimer $R/times.txt | tail -3
(cd $OUT && tar czf c3.tgz c3 && rm -rf c3)
