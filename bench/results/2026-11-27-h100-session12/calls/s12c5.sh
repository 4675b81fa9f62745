#!/bin/bash
# session 12, call 5: ncu of the decode kernels (one step's worth, ctx ~40), each alone: time, DRAM bytes and throughput, occupancy, registers
set -u
R=$OUT/r; mkdir -p $R
D=.carry-x/qwen-rs-dec
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/card.txt
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__occupancy_limit_registers,launch__grid_size,launch__block_size,sm__throughput.avg.pct_of_peak_sustained_elapsed
K='qkv_rope_decode|attention_decode|residual_matvec|gate_up_silu|lm_head_argmax|greedy_advance|embedding'
timeout 200 ncu --clock-control none --cache-control none --metrics $M --csv -k regex:"$K" --launch-skip 2000 --launch-count 246 $D bench --shape 0.5b > $R/ncu-decode.csv 2>$R/ncu-err.txt
echo "rc $?" >> $R/ncu-err.txt
timeout 200 ncu --clock-control none --cache-control none --set full -k regex:"gate_up_silu_decode_narrow" --launch-skip 500 --launch-count 1 $D bench --shape 0.5b > $R/ncu-gu-full.txt 2>&1
timeout 200 ncu --clock-control none --cache-control none --set full -k regex:"residual_matvec_decode" --launch-skip 501 --launch-count 1 $D bench --shape 0.5b > $R/ncu-down-full.txt 2>&1
cd $OUT && tar czf r.tgz r && rm -rf r
