#!/usr/bin/env bash
# Runs every GPU check from prebuilt binaries, in one go, on a machine with a CUDA GPU, python3,
# torch and transformers (the H100 machine). Build them first (on any machine):
#     cargo build --release && cargo test --release --no-run
#     scripts/gpu-check.sh --collect DIR     # copies the binaries into DIR (stripped)
# then on the GPU machine:
#     scripts/gpu-check.sh DIR [SHAPES...]   # SHAPES default: 0.5b 1.5b
# The real-model checks run when the default model is cached (QWEN_RS_CACHE_DIR).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--collect" ]; then
    dir=$2
    mkdir -p "$dir"
    cp target/release/qwen-rs "$dir/"
    for t in gpu_kernels gpu_engine; do
        f=$(ls -t target/release/build/qwen-rs/*/out/$t-* target/release/deps/$t-* 2>/dev/null | grep -v '\.d$' | head -1)
        cp "$f" "$dir/$t"
    done
    strip "$dir"/*
    ls -la "$dir"
    exit 0
fi

BIN=${1:?usage: scripts/gpu-check.sh DIR [SHAPES...]}
shift
SHAPES=${*:-0.5b 1.5b}
REF=${QWEN_RS_REF_DIR:-/tmp/qwen-ref}
LOG=${OUT:-/tmp}/gpu-check.log
declare -a rows
row() { rows+=("$(printf '%-44s %s' "$1" "$2")"); }
run() { # name, command...
    local name=$1; shift
    echo "=== $name" | tee -a "$LOG"
    if "$@" >>"$LOG" 2>&1; then row "$name" pass; else row "$name" "FAIL (see $LOG)"; fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG"
run "reference models ($SHAPES)" python3 scripts/gpu-check/ref_model.py "$REF" $SHAPES
for s in $SHAPES; do echo "$s config.json: $(tr -d ' \n' < "$REF/$s/config.json")" >>"$LOG"; done
run "kernels vs CPU twins" "$BIN/gpu_kernels" --include-ignored --nocapture --test-threads 1
# Under the sanitizers the prompt-attention test leaves out its largest cases (QWEN_RS_TEST_SMALL).
run "memcheck: kernel tests" env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 "$BIN/gpu_kernels" --include-ignored --test-threads 1
run "racecheck: kernel tests" env QWEN_RS_TEST_SMALL=1 compute-sanitizer --tool racecheck --error-exitcode 1 "$BIN/gpu_kernels" --include-ignored --test-threads 1
run "engine: tiny models vs transformers" "$BIN/gpu_engine" --include-ignored --nocapture tiny
run "engine: 3-chunk prompts vs CPU engine" "$BIN/gpu_engine" --include-ignored --nocapture long_prompt
run "engine: greedy steps chained on the device" "$BIN/gpu_engine" --include-ignored --nocapture chained_greedy
for s in $SHAPES; do
    run "engine: $s vs transformers (128 positions)" env QWEN_RS_REF_DIR="$REF" "$BIN/gpu_engine" --include-ignored --nocapture "full_size_${s/./_}"
done
if "$BIN/qwen-rs" --help >/dev/null && [ -n "$(ls "${QWEN_RS_CACHE_DIR:-$HOME/.cache/qwen-rs}"/*.gguf 2>/dev/null)" ]; then
    run "real model: greedy tokens equal CPU's" "$BIN/gpu_engine" --include-ignored --nocapture real_model
    prompt='Write a haiku about GPU computing'
    run "memcheck: real model, prefill + 32 decode" compute-sanitizer --tool memcheck --error-exitcode 1 "$BIN/qwen-rs" --temperature 0 -n 33 --ignore-eos "$prompt"
    run "racecheck: real model, prefill + 32 decode" compute-sanitizer --tool racecheck --error-exitcode 1 "$BIN/qwen-rs" --temperature 0 -n 33 --ignore-eos "$prompt"
    run "haiku on the GPU" "$BIN/qwen-rs" --temperature 0 "$prompt"
else
    row "real model checks" "skipped: no cached model"
fi
echo
printf '%s\n' "${rows[@]}"
grep -E "rel L2|tok/s|SUMMARY|config.json|^(seven|twenty|forty|fifty)|^ +cpu" "$LOG" | tail -50
