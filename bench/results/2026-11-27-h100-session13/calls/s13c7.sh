#!/bin/bash
# session 13 call 7: residual_matvec_decode_{3,5,10} (launcher's choice) vs base 70a626e: kernel tests, sanitizers, A/B benches 0.5B/1.5B/7B
set -u
R=$OUT/c7; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
K=.carry/gpu_kernels; E=.carry/gpu_engine; N=.carry/qwen-rs; B=.carry-x/qwen-rs-base
timeout 120 $K --include-ignored --nocapture --test-threads 1 residual qkv_attention > $R/k.txt 2>&1; echo "kernel tests rc $?"; grep -E "rel L2|panicked|test result" $R/k.txt | grep -E "residual|panicked|result|at (31|767|2047)"
timeout 250 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 $K --include-ignored --test-threads 1 residual qkv_attention > $R/memcheck.txt 2>&1; echo "memcheck rc $?"; tail -1 $R/memcheck.txt
timeout 250 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool racecheck --error-exitcode 1 $K --include-ignored --test-threads 1 residual qkv_attention > $R/racecheck.txt 2>&1; echo "racecheck rc $?"; tail -1 $R/racecheck.txt
b() { local label=$1 shape=$2; shift 2; "$@" bench --shape $shape > $R/bench-$shape-$label.json 2> $R/bench-$shape-$label.txt; echo "== $shape $label"; grep -E "^  decode" $R/bench-$shape-$label.txt; }
for i in 1 2; do b base-$i 0.5b $B; b new-$i 0.5b $N; done
for i in 1 2; do b base-$i 1.5b $B; b new-$i 1.5b $N; done
b base 7b $B; b new 7b $N
(cd $OUT && tar czf c7.tgz c7 && rm -rf c7)
