#!/bin/bash
# session 13 call 1: attention_block_decode (cluster kernel) correctness, sanitizers, engine tests, A/B benches.
set -u
R=$OUT/c1; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $R/card.txt
K=.carry/gpu_kernels; E=.carry/gpu_engine; N=.carry/qwen-rs
timeout 120 $K --include-ignored --nocapture --test-threads 1 attention_block > $R/k-ab.txt 2>&1; echo "kernel test rc $?"
grep -E "rel L2|panicked|error|test result" $R/k-ab.txt | head -40
timeout 120 $E --include-ignored --nocapture tiny > $R/engine-tiny.txt 2>&1; echo "tiny rc $?"; grep -E "rel L2|panicked|test result" $R/engine-tiny.txt
timeout 120 $E --include-ignored --nocapture chained > $R/engine-chained.txt 2>&1; echo "chained rc $?"; grep -E "panicked|test result" $R/engine-chained.txt
ab() { for i in 1 2; do
  env QWEN_RS_NO_ATTENTION_BLOCK=1 $N bench --shape $1 > $R/bench-$1-old-$i.json 2> $R/bench-$1-old-$i.txt; echo "old $1 $i"; grep -E "^  (prefill|decode)" $R/bench-$1-old-$i.txt
  $N bench --shape $1 > $R/bench-$1-new-$i.json 2> $R/bench-$1-new-$i.txt; echo "new $1 $i"; grep -E "^  (prefill|decode)" $R/bench-$1-new-$i.txt
done; }
ab 0.5b
ab 1.5b
timeout 200 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 $K --include-ignored --test-threads 1 attention_block > $R/memcheck.txt 2>&1; echo "memcheck rc $?"; tail -3 $R/memcheck.txt
timeout 200 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool racecheck --error-exitcode 1 $K --include-ignored --test-threads 1 attention_block > $R/racecheck.txt 2>&1; echo "racecheck rc $?"; tail -3 $R/racecheck.txt
timeout 150 $E --include-ignored --nocapture long_prompt > $R/engine-long.txt 2>&1; echo "long rc $?"; grep -E "rel L2|panicked|test result" $R/engine-long.txt
(cd $OUT && tar czf c1.tgz c1 && rm -rf c1)
