#!/bin/bash
# session 13 call 4: qkv_attention_decode (cluster kernel: q/k/v + attention) correctness, sanitizers, engine tests, A/B benches.
set -u
R=$OUT/c4; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $R/card.txt
K=.carry/gpu_kernels; E=.carry/gpu_engine; N=.carry/qwen-rs
timeout 120 $K --include-ignored --nocapture --test-threads 1 qkv_attention > $R/k-qa.txt 2>&1; echo "kernel test rc $?"
grep -E "rel L2|panicked|error|test result" $R/k-qa.txt | head -40
timeout 120 $E --include-ignored --nocapture tiny > $R/engine-tiny.txt 2>&1; echo "tiny rc $?"; grep -E "rel L2|panicked|test result" $R/engine-tiny.txt
timeout 120 $E --include-ignored --nocapture chained > $R/engine-chained.txt 2>&1; echo "chained rc $?"; grep -E "panicked|test result" $R/engine-chained.txt
ab() { for i in 1 2; do
  env QWEN_RS_NO_QKV_ATTENTION=1 $N bench --shape $1 > $R/bench-$1-old-$i.json 2> $R/bench-$1-old-$i.txt; echo "old $1 $i"; grep -E "^  (decode)" $R/bench-$1-old-$i.txt
  $N bench --shape $1 > $R/bench-$1-new-$i.json 2> $R/bench-$1-new-$i.txt; echo "new $1 $i"; grep -E "^  (decode)" $R/bench-$1-new-$i.txt
done; }
ab 0.5b
ab 1.5b
timeout 200 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 $K --include-ignored --test-threads 1 qkv_attention > $R/memcheck.txt 2>&1; echo "memcheck rc $?"; tail -2 $R/memcheck.txt
timeout 200 env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool racecheck --error-exitcode 1 $K --include-ignored --test-threads 1 qkv_attention > $R/racecheck.txt 2>&1; echo "racecheck rc $?"; tail -2 $R/racecheck.txt
M=gpu__time_duration.sum,launch__registers_per_thread
timeout 120 ncu --clock-control none --cache-control none --metrics $M --csv -k regex:"qkv_|attention_decode|residual" --launch-skip 2000 --launch-count 72 $N bench --shape 0.5b > $R/ncu-new.csv 2>$R/ncu-new-err.txt
python3 - <<'PY' $R
import csv,sys,collections,os
R=sys.argv[1]
for f in ['ncu-new.csv']:
    rows=[r for r in csv.reader(open(os.path.join(R,f))) if len(r)>10]
    if not rows: print(f,'no rows'); continue
    h=rows[0]; ki=h.index('Kernel Name'); mi=h.index('Metric Name'); vi=h.index('Metric Value')
    d=collections.defaultdict(list)
    for r in rows[1:]:
        if r[mi]=='gpu__time_duration.sum': d[r[ki].split('(')[0]].append(float(r[vi].replace(',','')))
    print(f); [print('  %-32s n=%3d mean %.2f us'%(k,len(v),sum(v)/len(v)/1000)) for k,v in d.items()]
PY
(cd $OUT && tar czf c4.tgz c4 && rm -rf c4)
