#!/usr/bin/env python3
"""Random full-size Qwen2.5 weights and Hugging Face transformers reference logits (GPU machine).

For each shape named on the command line (0.5b, 1.5b, 7b) writes OUT/<shape>/: the model as a
Hugging Face directory (bf16 safetensors), ref_ids.json (128 random token ids) and ref_logits.f32
([128, vocab] little-endian f32): transformers' logits for those ids with the bf16 weights, the
activations in float64 (float32, TF32 off, for 7b, whose float64 copy does not fit); and
ref_logits_bf16.f32, transformers' all-bf16 run (bf16 activations too).

    python3 scripts/gpu-check/ref_model.py /tmp/qwen-ref 0.5b 1.5b 7b
"""
import json
from pathlib import Path
import os
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

SHAPES = json.loads((Path(__file__).resolve().parents[2] / "bench" / "shapes.json").read_text())  # the published Qwen2.5 configs, shared with qwen-rs bench
TOKENS = 128

# The reference must be float32 arithmetic, not TF32.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")

out_root = sys.argv[1]
for shape in sys.argv[2:]:
    t0 = time.time()
    cfg = Qwen2Config(**SHAPES[shape], hidden_act="silu", use_sliding_window=False)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    print(f"{shape}: rotary inv_freq after .to(bfloat16) is {model.model.rotary_emb.inv_freq.dtype}", flush=True)
    d = os.path.join(out_root, shape)
    model.save_pretrained(d, safe_serialization=True, max_shard_size="20GB")
    del model
    # The references load the saved directory, as a user would. (Reusing the in-memory model is
    # wrong: `.to(bfloat16)` also rounds the rotary `inv_freq` buffer to bf16, and that rounding
    # survives a later `.float()`, shifting every rotation angle by up to 0.4 %.)
    ids = torch.randint(0, cfg.vocab_size, (TOKENS,), generator=torch.Generator().manual_seed(1))
    json.dump(ids.tolist(), open(os.path.join(d, "ref_ids.json"), "w"))

    def logits(dtype):
        m = Qwen2ForCausalLM.from_pretrained(d, dtype=dtype).cuda().eval()
        with torch.no_grad():
            out = m(ids[None].cuda()).logits[0].double()
        del m
        torch.cuda.empty_cache()
        return out

    bf16 = logits(torch.bfloat16)
    f32 = logits(torch.float32)
    # float64 needs 4x the bf16 memory; 7B in float64 does not fit with its activations.
    ref, what = (f32, "f32") if shape == "7b" else (logits(torch.float64), "f64")
    ref.float().cpu().numpy().astype("<f4").tofile(os.path.join(d, "ref_logits.f32"))
    bf16.float().cpu().numpy().astype("<f4").tofile(os.path.join(d, "ref_logits_bf16.f32"))

    def rel(a, b):
        return ((a - b).norm(dim=-1) / b.norm(dim=-1)).max().item()

    print(f"{shape}: written in {time.time() - t0:.0f} s; reference = {what} activations; worst rel L2 vs it: "
          f"transformers f32 {rel(f32, ref):.2e}, transformers all-bf16 {rel(bf16, ref):.2e}", flush=True)
