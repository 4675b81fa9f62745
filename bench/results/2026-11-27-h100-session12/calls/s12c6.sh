#!/bin/bash
# session 12, call 6: decode products with their weights staged in shared memory before the PDL wait (cp.async), carve-out choices
set -u
R=$OUT/r; mkdir -p $R
D=.carry-x/qwen-rs-dec
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
E="QWEN_RS_GSTAGED=1 QWEN_RS_RSTAGED=8192 QWEN_RS_CARVE=max"
env $E .carry-x/gpu_engine-dec --include-ignored --nocapture --test-threads 1 tiny chained long_prompt > $R/engine-staged.txt 2>&1; echo "engine staged rc $?" >> $R/summary.txt
env $E compute-sanitizer --tool memcheck --error-exitcode 1 .carry-x/gpu_engine-dec --include-ignored --test-threads 1 tiny_hd64 chained > $R/memcheck-staged.txt 2>&1; echo "memcheck staged rc $?" >> $R/summary.txt
cat $R/summary.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (decode)" >> $R/ab.txt; }
for rep in 1 2; do
  q X=1 $D bench --shape 0.5b
  q QWEN_RS_GSTAGED=1 $D bench --shape 0.5b
  q QWEN_RS_RSTAGED=1024 $D bench --shape 0.5b
  q QWEN_RS_RSTAGED=8192 $D bench --shape 0.5b
  q QWEN_RS_GSTAGED=1 QWEN_RS_RSTAGED=8192 $D bench --shape 0.5b
  q QWEN_RS_GSTAGED=1 QWEN_RS_RSTAGED=8192 QWEN_RS_CARVE=max $D bench --shape 0.5b
  q QWEN_RS_GSTAGED=1 QWEN_RS_RSTAGED=1024 QWEN_RS_CARVE=max $D bench --shape 0.5b
  q QWEN_RS_CARVE=max $D bench --shape 0.5b
  q QWEN_RS_GSTAGED=1 QWEN_RS_RSTAGED=8192 QWEN_RS_CARVE=max QWEN_RS_ATT=w8 $D bench --shape 0.5b
done
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
