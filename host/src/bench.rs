//! `qwen-rs bench`: speed and memory of the CUDA engine, as JSON on stdout and a table on stderr.
//!
//! Measures, on random weights of a Qwen2.5 shape (`--shape`) or a real model (`--model`): load
//! time, prefill tok/s at 128, 512 and 2048 prompt tokens, decode tok/s over 256 tokens at
//! context 32 and 2048 (with and without the CUDA graph at context 32), device memory, the card's
//! measured copy bandwidth, and the decode roofline: bytes read per token ÷ that bandwidth.

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::json;

use crate::checkpoint::Tensor;
use crate::config::Config;
use crate::cuda::{CudaEngine, Gpu};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::generate::GREEDY_STEPS;
use crate::weights::{Attention, DecoderLayer, Linear, Mlp, Model, Weights};

/// The published Qwen2.5 dense shapes, as Hugging Face config.json fields: `bench/shapes.json`,
/// which the transformers scripts (`bench/hf_peer.py`, `scripts/gpu-check/ref_model.py`) read too.
const SHAPES: &str = include_str!("../../bench/shapes.json");

/// The config of the Qwen2.5 shape `name` (`0.5b`, `1.5b`, `3b`, `7b`).
pub fn shape_config(name: &str) -> Result<Config> {
    let shapes: serde_json::Map<String, serde_json::Value> = serde_json::from_str(SHAPES)
        .map_err(|e| Error::Usage(format!("bench/shapes.json (built in) is not a JSON object: {e}")))?;
    let shape = shapes.get(name).ok_or_else(|| {
        let known: Vec<&str> = shapes.keys().map(String::as_str).collect();
        Error::Usage(format!("--shape {name}: known shapes are {}", known.join(", ")))
    })?;
    Config::from_hf_json(Path::new("bench/shapes.json"), &shape.to_string())
}

/// Random weights of `cfg`'s shape (uniform in ±0.05, norms near 1): speed does not depend on values.
pub fn random_weights(cfg: &Config, seed: u64) -> Weights {
    let counter = std::sync::atomic::AtomicU64::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let tensor = |shape: &[usize], center: f32| {
        let n: usize = shape.iter().product();
        let base = counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let mut data = vec![0f32; n];
        data.par_chunks_mut(1 << 16).enumerate().for_each(|(c, chunk)| {
            for (i, v) in chunk.iter_mut().enumerate() {
                // splitmix64 of the element's index
                let mut z = base.wrapping_add(((c << 16) + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                *v = center + ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1;
            }
        });
        Tensor { shape: shape.to_vec(), data }
    };
    let lin = |out: usize, inp: usize, bias: bool| Linear {
        weight: tensor(&[out, inp], 0.0),
        bias: bias.then(|| tensor(&[out], 0.0)),
    };
    let (h, i, q, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.q_dim(), cfg.kv_dim());
    let layers = (0..cfg.num_hidden_layers)
        .map(|_| DecoderLayer {
            input_layernorm: tensor(&[h], 1.0),
            self_attn: Attention {
                q_proj: lin(q, h, true),
                k_proj: lin(kv, h, true),
                v_proj: lin(kv, h, true),
                o_proj: lin(h, q, false),
            },
            post_attention_layernorm: tensor(&[h], 1.0),
            mlp: Mlp { gate_proj: lin(i, h, false), up_proj: lin(i, h, false), down_proj: lin(h, i, false) },
        })
        .collect();
    Weights {
        model: Model { embed_tokens: tensor(&[cfg.vocab_size, h], 0.0), layers, norm: tensor(&[h], 1.0) },
        lm_head: (!cfg.tie_word_embeddings).then(|| tensor(&[cfg.vocab_size, h], 0.0)),
    }
}

/// Bytes one decode step must read at context `ctx`: every weight once (bf16; the LM head, not the
/// embedding table, of which one row is read) plus the keys and values of `ctx` positions (f32).
pub fn bytes_per_token(cfg: &Config, ctx: usize) -> f64 {
    let (h, i, q, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.q_dim(), cfg.kv_dim());
    let per_layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
    let weights = 2 * (cfg.num_hidden_layers * per_layer + cfg.vocab_size * h + h);
    let biases = 4 * cfg.num_hidden_layers * (q + 2 * kv);
    let kv_cache = 4 * 2 * cfg.num_hidden_layers * kv * ctx;
    (weights + biases + kv_cache) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written.
fn copy_bandwidth(gpu: &Gpu) -> Result<f64> {
    let n = 256 << 20; // 1 GiB of u32
    let a = gpu.alloc::<u32>(n)?;
    let b = gpu.alloc::<u32>(n)?;
    let bytes = n * 4;
    let mut times = Vec::new();
    for rep in 0..6 {
        gpu.synchronize()?;
        let t = Instant::now();
        let stream = gpu.stream.as_inner();
        let r = unsafe {
            cust::sys::cuMemcpyDtoDAsync_v2(b.as_device_ptr().as_raw(), a.as_device_ptr().as_raw(), bytes, stream)
        };
        if r != cust::sys::CUresult::CUDA_SUCCESS {
            return Err(Error::Cuda(format!("cuMemcpyDtoDAsync: {r:?}")));
        }
        gpu.synchronize()?;
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(2.0 * bytes as f64 / median(times) / 1e9)
}

fn device_free() -> Result<usize> {
    cust::memory::mem_get_info().map(|(free, _)| free).map_err(|e| Error::Cuda(format!("cuMemGetInfo: {e}")))
}

/// Runs the benchmark; `model` wins over `shape`.
pub fn run(shape: &str, model: Option<&Path>) -> Result<serde_json::Value> {
    let gpu = Gpu::open()?;
    let card = gpu.name.clone();
    let bandwidth = copy_bandwidth(&gpu)?;
    let free_before = device_free()?;

    let t_load = Instant::now();
    let (cfg, weights, source) = match model {
        Some(p) => {
            let (c, w) = crate::load_weights(p)?;
            (c, w, p.display().to_string())
        }
        None => {
            let c = shape_config(shape)?;
            let w = random_weights(&c, 1);
            (c, w, format!("random weights, Qwen2.5-{shape} shape"))
        }
    };
    let host_load_s = t_load.elapsed().as_secs_f64();
    let max_seq = 2048 + 256 + 8;
    let t_up = Instant::now();
    let mut engine = CudaEngine::new(gpu, cfg.clone(), &weights, max_seq)?;
    let upload_s = t_up.elapsed().as_secs_f64();
    drop(weights);
    let device_bytes = free_before.saturating_sub(device_free()?);
    let kv_bytes = 2 * 4 * cfg.num_hidden_layers * cfg.kv_dim() * max_seq;
    let weight_bytes = bytes_per_token(&cfg, 0)
        + if cfg.tie_word_embeddings { 0.0 } else { (2 * cfg.vocab_size * cfg.hidden_size) as f64 };

    let ids = |n: usize, salt: usize| -> Vec<u32> {
        (0..n).map(|i| ((i * 7919 + salt * 104729) % cfg.vocab_size) as u32).collect()
    };

    // Prefill: the whole prompt from position 0, logits of the last token copied back.
    let mut prefill = serde_json::Map::new();
    for &n in &[128usize, 512, 2048] {
        engine.forward(&ids(n, 1), 0)?; // warm-up
        let times: Vec<f64> = (0..3)
            .map(|r| {
                let t = Instant::now();
                engine.forward(&ids(n, r + 2), 0).map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?;
        let s = median(times);
        prefill.insert(n.to_string(), json!({"ms": s * 1e3, "tok_s": n as f64 / s}));
    }

    // Decode: 256 greedy steps after a prompt of `ctx` tokens, asked of the engine as the CLI's
    // generation loop asks for them (`GREEDY_STEPS` at a time).
    let mut decode = |ctx: usize, graph: bool| -> Result<f64> {
        engine.set_use_graph(graph);
        engine.forward(&ids(ctx, 9), 0)?;
        let k = GREEDY_STEPS;
        let mut tok = *engine.decode_greedy(1, ctx, k)?.last().unwrap_or(&1); // warm-up
        engine.forward(&ids(ctx, 9), 0)?;
        let t = Instant::now();
        for p in (ctx..ctx + 256).step_by(k) {
            tok = *engine.decode_greedy(tok, p, k)?.last().unwrap_or(&tok);
        }
        Ok(256.0 / t.elapsed().as_secs_f64())
    };
    let d32 = decode(32, true)?;
    let d2048 = decode(2048, true)?;
    let d32_no_graph = decode(32, false)?;

    let roof = |ctx: usize| bandwidth * 1e9 / bytes_per_token(&cfg, ctx);
    let report = json!({
        "card": card,
        "model": source,
        "config": {"hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads,
                   "kv_heads": cfg.num_key_value_heads, "intermediate": cfg.intermediate_size, "vocab": cfg.vocab_size},
        "load_s": {"host": host_load_s, "upload": upload_s, "total": host_load_s + upload_s},
        "prefill": prefill,
        "decode_tok_s": {"ctx_32": d32, "ctx_2048": d2048, "ctx_32_without_cuda_graph": d32_no_graph},
        "copy_bandwidth_gb_s": bandwidth,
        "roofline_tok_s": {"ctx_32": roof(32), "ctx_2048": roof(2048)},
        "fraction_of_roofline": {"ctx_32": d32 / roof(32), "ctx_2048": d2048 / roof(2048)},
        "device_memory_mib": {"used": device_bytes as f64 / 1048576.0, "weights": weight_bytes / 1048576.0,
                               "kv_cache": kv_bytes as f64 / 1048576.0},
    });
    eprintln!("qwen-rs bench: {} on {card}", report["model"].as_str().unwrap_or(""));
    eprintln!(
        "  load            {:.2} s (host {:.2} s + upload {:.2} s)",
        host_load_s + upload_s,
        host_load_s,
        upload_s
    );
    for n in ["128", "512", "2048"] {
        eprintln!(
            "  prefill {n:>5}     {:8.2} ms  {:9.0} tok/s",
            prefill[n]["ms"].as_f64().unwrap_or(0.0),
            prefill[n]["tok_s"].as_f64().unwrap_or(0.0)
        );
    }
    eprintln!(
        "  decode ctx 32    {d32:9.0} tok/s  ({:.0} % of roofline {:.0}; {d32_no_graph:.0} without the CUDA graph)",
        100.0 * d32 / roof(32),
        roof(32)
    );
    eprintln!(
        "  decode ctx 2048  {d2048:9.0} tok/s  ({:.0} % of roofline {:.0})",
        100.0 * d2048 / roof(2048),
        roof(2048)
    );
    eprintln!("  copy bandwidth   {bandwidth:9.0} GB/s; device memory {:.0} MiB", device_bytes as f64 / 1048576.0);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::shape_config;

    #[test]
    fn shapes_come_from_the_shared_table() {
        let c = shape_config("0.5b").unwrap();
        let got = (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads);
        assert_eq!(got, (896, 4864, 24, 14));
        assert_eq!((c.num_key_value_heads, c.head_dim, c.vocab_size, c.tie_word_embeddings), (2, 64, 151936, true));
        assert_eq!((c.rope_theta, c.rms_norm_eps), (1_000_000.0, 1e-6));
        let c = shape_config("7b").unwrap();
        assert_eq!((c.hidden_size, c.head_dim, c.vocab_size, c.tie_word_embeddings), (3584, 128, 152064, false));
        assert_eq!(shape_config("3b").unwrap().num_hidden_layers, 36);
        let e = shape_config("13b").unwrap_err().to_string();
        assert!(e.contains("0.5b, 1.5b, 3b, 7b"), "{e}");
    }
}
