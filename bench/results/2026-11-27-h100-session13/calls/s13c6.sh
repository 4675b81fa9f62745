#!/bin/bash
# session 13 call 6: residual_matvec_decode_{3,5,10} chosen by the launcher (whole row in flight): kernel tests, sanitizers, engine tests, benches; o-product through the in-flight kernel (scratch QWEN_RS_RESO=threads)
set -u
R=$OUT/c6; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
K=.carry/gpu_kernels; E=.carry/gpu_engine; N=.carry/qwen-rs
timeout 120 $K --include-ignored --nocapture --test-threads 1 residual qkv_attention > $R/k.txt 2>&1; echo "kernel tests rc $?"; grep -E "residual.*rel L2|panicked|test result" $R/k.txt
timeout 200 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 $K --include-ignored --test-threads 1 residual > $R/memcheck.txt 2>&1; echo "memcheck rc $?"; tail -1 $R/memcheck.txt
timeout 200 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool racecheck --error-exitcode 1 $K --include-ignored --test-threads 1 residual > $R/racecheck.txt 2>&1; echo "racecheck rc $?"; tail -1 $R/racecheck.txt
timeout 200 $E --include-ignored --nocapture tiny chained long_prompt > $R/engine.txt 2>&1; echo "engine rc $?"; grep -E "rel L2|panicked|test result" $R/engine.txt
b() { local label=$1 shape=$2; shift 2; "$@" bench --shape $shape > $R/bench-$shape-$label.json 2> $R/bench-$shape-$label.txt; echo "== $shape $label"; grep -E "^  decode" $R/bench-$shape-$label.txt; }
for i in 1 2; do
  b new-$i 0.5b $N
  b reso64-$i 0.5b env QWEN_RS_RESO=64 .carry-x/qwen-rs-reso
  b reso128-$i 0.5b env QWEN_RS_RESO=128 .carry-x/qwen-rs-reso
  b reso256-$i 0.5b env QWEN_RS_RESO=256 .carry-x/qwen-rs-reso
done
b new 1.5b $N
b new 7b $N
(cd $OUT && tar czf c6.tgz c6 && rm -rf c6)
