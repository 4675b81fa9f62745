#!/bin/bash
# session 12, call 8: attention_decode_gqa (K/V read once per KV head): kernel test + sanitizers + engine tests, then A/B
set -u
R=$OUT/r; mkdir -p $R
D=.carry-x/qwen-rs-gqa
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
QWEN_RS_GQA=64 .carry-x/gpu_kernels-gqa --include-ignored --nocapture --test-threads 1 attention_decode > $R/kernels-gqa.txt 2>&1; echo "kernel test gqa rc $?" >> $R/summary.txt
QWEN_RS_GQA=64 compute-sanitizer --tool memcheck --error-exitcode 1 .carry-x/gpu_kernels-gqa --include-ignored --test-threads 1 attention_decode > $R/memcheck-gqa.txt 2>&1; echo "memcheck gqa rc $?" >> $R/summary.txt
QWEN_RS_GQA=64 compute-sanitizer --tool racecheck --error-exitcode 1 .carry-x/gpu_kernels-gqa --include-ignored --test-threads 1 attention_decode > $R/racecheck-gqa.txt 2>&1; echo "racecheck gqa rc $?" >> $R/summary.txt
QWEN_RS_GQA=64 .carry-x/gpu_engine-gqa --include-ignored --nocapture --test-threads 1 tiny chained long_prompt > $R/engine-gqa.txt 2>&1; echo "engine gqa rc $?" >> $R/summary.txt
cat $R/summary.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (decode)" >> $R/ab.txt; }
for rep in 1 2; do
  q X=1 $D bench --shape 0.5b
  q QWEN_RS_GQA=16 $D bench --shape 0.5b
  q QWEN_RS_GQA=32 $D bench --shape 0.5b
  q QWEN_RS_GQA=64 $D bench --shape 0.5b
done
q X=1 $D bench --shape 1.5b
q QWEN_RS_GQA=32 $D bench --shape 1.5b
q QWEN_RS_GQA=64 $D bench --shape 1.5b
q X=1 $D bench --shape 7b
q QWEN_RS_GQA=64 $D bench --shape 7b
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
