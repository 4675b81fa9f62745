#!/bin/bash
# session 12, call 9: decode gate/up with all of a warp's row pairs loaded before the wait, x ⊙ g in shared memory (QWEN_RS_GINFLIGHT=P)
set -u
R=$OUT/r; mkdir -p $R
D=.carry-x/qwen-rs-inf
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
for p in 4 3 2; do
QWEN_RS_GINFLIGHT=$p .carry-x/gpu_engine-inf --include-ignored --nocapture --test-threads 1 tiny chained > $R/engine-$p.txt 2>&1; echo "engine inflight$p rc $?" >> $R/summary.txt
done
QWEN_RS_GINFLIGHT=4 compute-sanitizer --tool memcheck --error-exitcode 1 .carry-x/gpu_engine-inf --include-ignored --test-threads 1 tiny_hd64 chained > $R/memcheck-4.txt 2>&1; echo "memcheck inflight4 rc $?" >> $R/summary.txt
QWEN_RS_GINFLIGHT=4 compute-sanitizer --tool racecheck --error-exitcode 1 .carry-x/gpu_engine-inf --include-ignored --test-threads 1 tiny_hd64 chained > $R/racecheck-4.txt 2>&1; echo "racecheck inflight4 rc $?" >> $R/summary.txt
cat $R/summary.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (decode)" >> $R/ab.txt; }
for rep in 1 2 3; do
  q X=1 $D bench --shape 0.5b
  q QWEN_RS_GINFLIGHT=4 $D bench --shape 0.5b
  q QWEN_RS_GINFLIGHT=3 $D bench --shape 0.5b
  q QWEN_RS_GINFLIGHT=2 $D bench --shape 0.5b
done
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
