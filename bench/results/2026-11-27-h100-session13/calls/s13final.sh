#!/bin/bash
# session 13 final call at 53ece9a (q/k/v + attention cluster kernel, residual rows in flight): the real model assembled, the benches, the peer and the CLI, then scripts/gpu-check.sh 0.5b 1.5b 7b.
set -u
R=$OUT/final; mkdir -p $R
M=/root/.cache/qwen-rs/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
mkdir -p /root/.cache/qwen-rs && cat /root/qm/m0 /root/qm/m1 /root/qm/m2 /root/qm/m3 /root/qm/m4 /root/qm/m5 /root/qm/m6 /root/qm/m7 /root/qm/m8 /root/qm/m9 > $M && sha256sum $M > $R/model-sha256.txt
cat $R/model-sha256.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $R/card.txt
N=.carry/qwen-rs
for i in 1 2 3; do $N bench --shape 0.5b > $R/bench-0.5b-$i.json 2> $R/bench-0.5b-$i.txt; done
python3 bench/hf_peer.py 0.5b > $R/peer-0.5b.json 2> $R/peer-0.5b.txt
$N bench --shape 0.5b > $R/bench-0.5b-after-peer.json 2> $R/bench-0.5b-after-peer.txt
$N bench --shape 1.5b > $R/bench-1.5b.json 2> $R/bench-1.5b.txt
$N bench --shape 7b > $R/bench-7b.json 2> $R/bench-7b.txt
$N bench --model $M > $R/bench-gguf.json 2> $R/bench-gguf.txt
for i in 1 2 3 4; do echo "== run $i" >> $R/cli.log; $N -v --temperature 0 "Write a haiku about GPU computing" >> $R/cli.log 2>&1; done
grep -hE "prefill|decode ctx|load|memory" $R/bench-*.txt | head -60
cat $R/peer-0.5b.json
grep -E "load|tok/s" $R/cli.log | head -20
echo "benches done"; (cd $OUT && tar czf final-benches.tgz final)
start=$(date +%s)
OUT=$R scripts/gpu-check.sh .carry 0.5b 1.5b 7b > $R/gpu-check-summary.txt 2>&1
echo "gpu-check: $(( $(date +%s) - start )) s" >> $R/gpu-check-summary.txt
grep -E "pass|FAIL|skipped|gpu-check:" $R/gpu-check-summary.txt
(cd $OUT && tar czf final.tgz final && rm -rf final)
