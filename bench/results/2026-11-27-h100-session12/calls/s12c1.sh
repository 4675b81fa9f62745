#!/bin/bash
# session 12, call 1: matmul_wgmma_64 correctness + sanitizers; engine with 2048-token chunks (buffers in mlp) + wg64; A/B benches.
set -u
R=$OUT/r; mkdir -p $R
B=.carry-base/qwen-rs; N=.carry/qwen-rs
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
.carry/gpu_kernels --include-ignored --nocapture --test-threads 1 matmul > $R/kernels.txt 2>&1; echo "kernels matmul rc $?" >> $R/summary.txt
compute-sanitizer --tool memcheck --error-exitcode 1 .carry/gpu_kernels --include-ignored --test-threads 1 matmul > $R/memcheck.txt 2>&1; echo "memcheck rc $?" >> $R/summary.txt
QWEN_RS_CHUNK=2048 QWEN_RS_WG64_MAX=512 .carry/gpu_engine --include-ignored --nocapture --test-threads 1 long_prompt tiny chained > $R/engine-2048-wg64.txt 2>&1; echo "engine chunk2048 wg64 rc $?" >> $R/summary.txt
.carry/gpu_engine --include-ignored --nocapture --test-threads 1 long_prompt tiny chained > $R/engine.txt 2>&1; echo "engine default rc $?" >> $R/summary.txt
cat $R/summary.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (prefill|decode|copy)" >> $R/ab.txt; }
for rep in 1 2; do
  q X=1 $B bench --shape 0.5b
  q X=1 $N bench --shape 0.5b
  q QWEN_RS_WG64_MAX=512 $N bench --shape 0.5b
  q QWEN_RS_WG64_MAX=512 QWEN_RS_WG64_SWIGLU=1 $N bench --shape 0.5b
  q QWEN_RS_CHUNK=2048 $N bench --shape 0.5b
  q QWEN_RS_CHUNK=2048 QWEN_RS_WG64_MAX=512 $N bench --shape 0.5b
done
q X=1 $B bench --shape 1.5b
q QWEN_RS_WG64_MAX=512 $N bench --shape 1.5b
q QWEN_RS_CHUNK=2048 QWEN_RS_WG64_MAX=512 $N bench --shape 1.5b
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
