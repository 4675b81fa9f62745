#!/bin/bash
# session 12, call 2: attribution A/B (aliasing vs PTX), 7B, racecheck matmul, nsys timeline of decode if nsys exists.
set -u
R=$OUT/r; mkdir -p $R
B=.carry-base/qwen-rs; N=.carry/qwen-rs; T=.carry-x/qwen-rs-toggles
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
(which nsys; ls /usr/local/cuda/bin | tr '\n' ' '; ls /opt/nvidia 2>/dev/null; ls /usr/local/cuda/ | tr '\n' ' ') > $R/tools.txt 2>&1
NSYS=$(which nsys 2>/dev/null || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
echo "nsys: $NSYS" >> $R/tools.txt
if [ -n "$NSYS" ]; then
  timeout 240 $NSYS profile --cuda-graph-trace=node --trace=cuda -o $R/dec $N bench --shape 0.5b > $R/nsys-run.txt 2>&1
  timeout 200 $NSYS stats -r cuda_gpu_trace -f csv -o $R/trace $R/dec.nsys-rep > $R/nsys-stats.txt 2>&1
  rm -f $R/dec.sqlite; ls -la $R >> $R/tools.txt
  gzip $R/trace*.csv 2>/dev/null
  rm -f $R/dec.nsys-rep
fi
compute-sanitizer --tool racecheck --error-exitcode 1 .carry/gpu_kernels --include-ignored --test-threads 1 matmul > $R/racecheck.txt 2>&1; echo "racecheck matmul rc $?" >> $R/summary.txt
cat $R/summary.txt
q() { echo "== $*" >> $R/ab.txt; env "$@" 2>&1 | grep -E "^  (prefill|decode|copy)" >> $R/ab.txt; }
for rep in 1 2; do
  q X=1 $B bench --shape 0.5b
  q QWEN_RS_CHUNK=1024 QWEN_RS_SEPARATE=1 $T bench --shape 0.5b
  q QWEN_RS_CHUNK=1024 $T bench --shape 0.5b
  q X=1 $N bench --shape 0.5b
done
q X=1 $B bench --shape 7b
q X=1 $N bench --shape 7b
cat $R/ab.txt
cd $OUT && tar czf r.tgz r && rm -rf r
