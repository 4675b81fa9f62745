#!/bin/bash
# session 12, call 3: decode leave-one-kernel-out timings (QWEN_RS_SKIP in a scratch build; outputs wrong, times tell each launch's cost in the graph)
set -u
R=$OUT/r; mkdir -p $R
S=.carry-x/qwen-rs-skip
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (decode)" >> $R/ab.txt; }
for v in none qkv att o gu down head qkv,att,o,gu,down att,o none; do
  q QWEN_RS_SKIP=$v $S bench --shape 0.5b
done
q QWEN_RS_SKIP=none $S bench --shape 1.5b
q QWEN_RS_SKIP=att $S bench --shape 1.5b
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
