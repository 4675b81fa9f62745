#!/bin/bash
# session 13 call 2: attention_block_decode launch-shape variants (cluster C, warps W) A/B on the 0.5B; ncu of the decode kernels.
set -u
R=$OUT/c2; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $R/card.txt
N=.carry-k/qwen-rs
b() { # label env... cmd
  local label=$1; shift
  "$@" bench --shape 0.5b > $R/bench-$label.json 2> $R/bench-$label.txt; echo "== $label"; grep -E "^  decode" $R/bench-$label.txt
}
for i in 1 2; do
  b old-$i env QWEN_RS_NO_ATTENTION_BLOCK=1 $N
  b c8w12-$i $N
  b c8w8-$i .carry-x/qwen-rs-c8w8

  b c8w4-$i .carry-x/qwen-rs-c8w4
done
M=gpu__time_duration.sum,dram__bytes_read.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__grid_size,launch__block_size
K='qkv_rope_decode|attention_decode|residual_matvec|gate_up_silu|attention_block'
timeout 120 ncu --clock-control none --cache-control none --metrics $M --csv -k regex:"$K" --launch-skip 2000 --launch-count 120 env QWEN_RS_NO_ATTENTION_BLOCK=1 $N bench --shape 0.5b > $R/ncu-old.csv 2>$R/ncu-old-err.txt
timeout 120 ncu --clock-control none --cache-control none --metrics $M --csv -k regex:"$K" --launch-skip 2000 --launch-count 72 $N bench --shape 0.5b > $R/ncu-new.csv 2>$R/ncu-new-err.txt
timeout 120 ncu --clock-control none --cache-control none --metrics $M --csv -k regex:"$K" --launch-skip 2000 --launch-count 72 .carry-x/qwen-rs-c8w4 bench --shape 0.5b > $R/ncu-c8w4.csv 2>$R/ncu-c8w4-err.txt
timeout 150 ncu --clock-control none --cache-control none --set full -k regex:"attention_block" --launch-skip 500 --launch-count 1 $N bench --shape 0.5b > $R/ncu-ab-full.txt 2>&1
python3 - <<'PY' $R
import csv,sys,collections,os
R=sys.argv[1]
for f in ['ncu-old.csv','ncu-new.csv','ncu-c8w4.csv']:
    rows=[r for r in csv.reader(open(os.path.join(R,f))) if len(r)>10]
    if not rows: print(f,'no rows'); continue
    h=rows[0]; ki=h.index('Kernel Name'); mi=h.index('Metric Name'); vi=h.index('Metric Value')
    d=collections.defaultdict(list)
    for r in rows[1:]:
        if r[mi]=='gpu__time_duration.sum': d[r[ki].split('(')[0]].append(float(r[vi].replace(',','')))
    print(f); [print('  %-32s n=%3d mean %.2f us'%(k,len(v),sum(v)/len(v)/1000)) for k,v in d.items()]
PY
grep -E "Duration|Registers|Cluster|Achieved Occupancy|Theoretical Occupancy|Block Limit|Waves|DRAM Throughput|Memory Throughput" $R/ncu-ab-full.txt | head -30
(cd $OUT && tar czf c2.tgz c2 && rm -rf c2)
