#!/bin/bash
# session 12, call 4: decode A/B of launch footprints: o-proj (and down) a warp a row, attention 8 warps or 8 positions a step, L1 carve-out choices
set -u
R=$OUT/r; mkdir -p $R
D=.carry-x/qwen-rs-dec
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
QWEN_RS_OWARP=8192 QWEN_RS_ATT=s8 QWEN_RS_CARVE=all .carry-x/gpu_engine-dec --include-ignored --nocapture --test-threads 1 tiny chained > $R/engine-a.txt 2>&1; echo "engine owarp8192 s8 carve-all rc $?" >> $R/summary.txt
QWEN_RS_OWARP=1024 QWEN_RS_ATT=w8 .carry-x/gpu_engine-dec --include-ignored --nocapture --test-threads 1 tiny chained > $R/engine-b.txt 2>&1; echo "engine owarp1024 w8 rc $?" >> $R/summary.txt
cat $R/summary.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (decode)" >> $R/ab.txt; }
for rep in 1 2; do
  q X=1 $D bench --shape 0.5b
  q QWEN_RS_OWARP=1024 $D bench --shape 0.5b
  q QWEN_RS_OWARP=8192 $D bench --shape 0.5b
  q QWEN_RS_ATT=w8 $D bench --shape 0.5b
  q QWEN_RS_ATT=s8 $D bench --shape 0.5b
  q QWEN_RS_CARVE=none $D bench --shape 0.5b
  q QWEN_RS_CARVE=narrow $D bench --shape 0.5b
  q QWEN_RS_CARVE=all $D bench --shape 0.5b
  q QWEN_RS_OWARP=1024 QWEN_RS_CARVE=narrow $D bench --shape 0.5b
  q QWEN_RS_OWARP=1024 QWEN_RS_CARVE=narrow QWEN_RS_ATT=s8 $D bench --shape 0.5b
done
q X=1 $D bench --shape 1.5b
q QWEN_RS_OWARP=2048 $D bench --shape 1.5b
q QWEN_RS_CARVE=narrow $D bench --shape 1.5b
q QWEN_RS_CARVE=none $D bench --shape 1.5b
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
