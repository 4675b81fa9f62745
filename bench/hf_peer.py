#!/usr/bin/env python3
"""The peer: Hugging Face transformers on the same card and the same Qwen2.5 shape, batch 1.

Prints JSON: decode tok/s for (a) eager generation with the dynamic cache and (b) a static KV cache
with the one-token decode step captured in a CUDA graph (torch.cuda.CUDAGraph, replayed per token),
and prefill times at 128/512/2048 tokens. Random bf16 weights: speed does not depend on values.

    python3 bench/hf_peer.py 0.5b            # on the GPU machine (torch + transformers)
"""
import json
from pathlib import Path
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.cache_utils import StaticCache

SHAPES = json.loads((Path(__file__).resolve().parent / "shapes.json").read_text())  # the published Qwen2.5 configs, shared with qwen-rs bench
shape = sys.argv[1] if len(sys.argv) > 1 else "0.5b"
cfg = Qwen2Config(**SHAPES[shape], use_sliding_window=False)
torch.manual_seed(0)
with torch.device("cuda"):
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()
dev = "cuda"
out = {"card": torch.cuda.get_device_name(), "shape": shape, "transformers": __import__("transformers").__version__}


def sync_time(f):
    torch.cuda.synchronize()
    t = time.perf_counter()
    f()
    torch.cuda.synchronize()
    return time.perf_counter() - t


with torch.no_grad():
    # Prefill: the whole prompt, one forward.
    out["prefill_ms"] = {}
    for n in (128, 512, 2048):
        ids = torch.randint(0, cfg.vocab_size, (1, n), device=dev)
        model(ids)
        out["prefill_ms"][n] = 1e3 * sorted(sync_time(lambda: model(ids)) for _ in range(3))[1]

    # (a) Eager decode: 128 tokens after a 32-token prompt, dynamic cache.
    ids = torch.randint(0, cfg.vocab_size, (1, 32), device=dev)
    gen = lambda: model.generate(ids, max_new_tokens=128, min_new_tokens=128, do_sample=False)
    gen()
    out["decode_tok_s_eager"] = 128 / sync_time(gen)

    # (b) Static cache, the one-token step in a CUDA graph.
    # transformers 5's static layers count their own write position (incremented inside the graph
    # on every replay), so leave room for the warm-up steps too: 32 + 3 + 8 + 256 < 512.
    try:  # transformers 5: allocated lazily on first use
        cache = StaticCache(config=cfg, max_cache_len=512)
    except TypeError:  # transformers 4.x
        cache = StaticCache(config=cfg, max_batch_size=1, max_cache_len=512, device=dev, dtype=torch.bfloat16)
    pos = torch.arange(32, device=dev)
    logits = model(ids, past_key_values=cache, cache_position=pos, use_cache=True).logits
    tok = logits[:, -1:].argmax(-1)
    step_pos = torch.tensor([32], device=dev)

    def step():
        return model(tok, past_key_values=cache, cache_position=step_pos, use_cache=True).logits

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_logits = step()

    def decode(n=256):
        for i in range(n):
            step_pos.fill_(32 + i)
            graph.replay()
            tok.copy_(static_logits[:, -1:].argmax(-1))
            tok.item()  # the host needs each token, as in real generation

    decode(8)
    out["decode_tok_s_static_cuda_graph"] = 256 / sync_time(decode)

print(json.dumps(out, indent=1))
