#!/bin/bash
# session 12, call 10: decode gate/up with each warp's pairs all in flight before the wait, x ⊙ g in shared memory (QWEN_RS_GINFLIGHT="P,B"), 0.5B, 1.5B, 7B
set -u
R=$OUT/r; mkdir -p $R
D=.carry-x/qwen-rs-inf
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
for v in 1,4 2,4 1,8 2,8 1,16; do
QWEN_RS_GINFLIGHT=$v .carry-x/gpu_engine-inf --include-ignored --nocapture --test-threads 1 tiny chained > $R/engine-$v.txt 2>&1; echo "engine inflight $v rc $?" >> $R/summary.txt
done
cat $R/summary.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (decode)" >> $R/ab.txt; }
for rep in 1 2 3; do
  q X=1 $D bench --shape 0.5b
  q QWEN_RS_GINFLIGHT=2,4 $D bench --shape 0.5b
  q QWEN_RS_GINFLIGHT=1,4 $D bench --shape 0.5b
done
for rep in 1 2; do
  q X=1 $D bench --shape 1.5b
  q QWEN_RS_GINFLIGHT=1,8 $D bench --shape 1.5b
  q QWEN_RS_GINFLIGHT=2,8 $D bench --shape 1.5b
done
q X=1 $D bench --shape 7b
q QWEN_RS_GINFLIGHT=1,16 $D bench --shape 7b
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
