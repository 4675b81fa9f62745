//! The whole CUDA engine: against Hugging Face transformers and against the CPU engine.
//! Needs a CUDA GPU: run with `cargo test -- --include-ignored` there (scripts/gpu-check.sh does).

mod common;

use std::path::{Path, PathBuf};

use qwen_rs::chat::{Message, render};
use qwen_rs::cpu::CpuEngine;
use qwen_rs::cuda::engine::CHUNK;
use qwen_rs::cuda::{CudaEngine, Gpu};
use qwen_rs::engine::Engine;
use qwen_rs::generate::generate;
use qwen_rs::sampling::{Sampler, SamplingParams};

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    assert!(got.iter().all(|v| v.is_finite()), "non-finite logits");
    let num: f64 = got.iter().zip(want).map(|(g, w)| (*g as f64 - *w as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Logits at every position, teacher-forced one token at a time through the KV cache.
fn stepwise(engine: &mut dyn Engine, ids: &[u32]) -> Vec<Vec<f32>> {
    ids.iter().enumerate().map(|(p, &id)| engine.forward(&[id], p).unwrap()).collect()
}

fn tiny(model: &str, path: PathBuf) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture(model).join("hf_logits.json")).unwrap()).unwrap();
    let ids: Vec<u32> = v["token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let want: Vec<Vec<f32>> = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    let (cfg, w) = qwen_rs::load_weights(&path).unwrap();
    // Decode steps through the q/k/v + attention cluster kernel (where the GPU has it) and
    // through the two separate kernels.
    let mut worst = 0f64;
    for block in [true, false] {
        let mut dev = Gpu::open().expect("a CUDA device");
        if block && !dev.qkv_attention {
            continue;
        }
        dev.qkv_attention = block;
        let mut gpu = CudaEngine::new(dev, cfg.clone(), &w, 64).unwrap();
        for (p, got) in stepwise(&mut gpu, &ids).iter().enumerate() {
            let err = rel_l2(got, &want[p]);
            worst = worst.max(err);
            assert!(err <= 2e-2, "{model} position {p} (q/k/v + attention kernel {block}): rel L2 {err:.2e}");
        }
    }
    // The batched prefill path gives the same last-position logits.
    let mut gpu2 = CudaEngine::new(Gpu::open().unwrap(), cfg, &w, 64).unwrap();
    let last = gpu2.forward(&ids, 0).unwrap();
    let err = rel_l2(&last, &want[ids.len() - 1]);
    assert!(err <= 2e-2, "{model} prefill: rel L2 {err:.2e}");
    println!("{}: worst rel L2 vs transformers {worst:.2e}, prefill {err:.2e}", path.display());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tiny_hd64_matches_transformers() {
    tiny("tiny-hd64", common::fixture("tiny-hd64.gguf"));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn tiny_hd128_matches_transformers() {
    tiny("tiny-hd128", common::fixture("tiny-hd128"));
}

/// Greedy steps chained on the device (`decode_greedy`: each step takes its position and token
/// from the step before, the host waits once) choose the tokens that one step at a time
/// (`forward_greedy`, position and token copied in each time) chooses, with and without the CUDA
/// graph, in one call or in several; and a call that would run past the context is refused.
fn chained_greedy(path: PathBuf) {
    let (cfg, w) = qwen_rs::load_weights(&path).unwrap();
    let (max_seq, steps) = (64, 40);
    let prompt: Vec<u32> = (0..11).map(|i| ((i * 7919 + 5) % cfg.vocab_size) as u32).collect();
    let mut gpu = CudaEngine::new(Gpu::open().expect("a CUDA device"), cfg.clone(), &w, max_seq).unwrap();
    let first = gpu.forward_greedy(&prompt, 0).unwrap();
    let mut want = vec![first];
    for i in 0..steps {
        let next = gpu.forward_greedy(&[want[i]], prompt.len() + i).unwrap();
        want.push(next);
    }
    let distinct = want.iter().collect::<std::collections::HashSet<_>>().len();
    println!("{}: {steps} greedy steps one at a time: {want:?} ({distinct} distinct)", path.display());
    // a sequence that varies, so that a step run at the wrong position or with the wrong token shows
    assert!(distinct >= 10, "the prompt leads to too few distinct tokens to test anything");
    for graph in [true, false] {
        gpu.set_use_graph(graph);
        for per_call in [steps, 8, 1] {
            assert_eq!(gpu.forward_greedy(&prompt, 0).unwrap(), first);
            let mut got = vec![first];
            while got.len() <= steps {
                let n = per_call.min(steps + 1 - got.len());
                let start = prompt.len() + got.len() - 1;
                got.extend(gpu.decode_greedy(*got.last().unwrap(), start, n).unwrap());
            }
            assert_eq!(got, want, "graph {graph}, {per_call} steps a call");
        }
    }
    // The last positions of the context, and one step too many.
    assert_eq!(gpu.decode_greedy(first, max_seq - 3, 3).unwrap().len(), 3);
    assert!(gpu.decode_greedy(first, max_seq - 2, 3).is_err(), "ran past the context");
}

/// (The tiny head_dim-128 model repeats one token after this prompt, which would test nothing.)
#[test]
#[ignore = "needs a CUDA GPU"]
fn chained_greedy_hd64_matches_one_at_a_time() {
    chained_greedy(common::fixture("tiny-hd64.gguf"));
}

/// A prompt of more than two prefill chunks ([`CHUNK`] tokens each), in one call: the last
/// position's logits are the CPU engine's on the same bf16 weights. Covers the prompt products,
/// the tensor-core attention of chunks that start past position 0 over cache rows earlier chunks
/// wrote, and the LM head on the last chunk only.
fn long_prompt(path: PathBuf) {
    let (cfg, w) = qwen_rs::load_weights(&path).unwrap();
    let n = 2 * CHUNK + 77;
    let ids: Vec<u32> = (0..n).map(|i| ((i * 7919 + 13) % cfg.vocab_size) as u32).collect();
    let mut gpu = CudaEngine::new(Gpu::open().expect("a CUDA device"), cfg.clone(), &w, n + 8).unwrap();
    let got = gpu.forward(&ids, 0).unwrap();
    let want = CpuEngine::new(cfg, w.rounded_to_bf16(), n).forward_tokens(&ids, 0, false).unwrap();
    let err = rel_l2(&got, &want);
    println!("{}: {n}-token prompt, last logits vs the CPU engine: rel L2 {err:.2e}", path.display());
    assert!(err <= 1e-3, "{}: {n}-token prompt: rel L2 {err:.2e}", path.display());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn long_prompt_hd64_matches_cpu() {
    long_prompt(common::fixture("tiny-hd64.gguf"));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn long_prompt_hd128_matches_cpu() {
    long_prompt(common::fixture("tiny-hd128"));
}

/// Random full-size weights written on the GPU machine by scripts/gpu-check/ref_model.py, with
/// transformers' bf16 logits for a 128-token prompt: `$QWEN_RS_REF_DIR/<shape>/` holds the model,
/// `ref_ids.json` and `ref_logits.f32` (`[tokens, vocab]` little-endian f32).
fn full_size(shape: &str) {
    let root = std::env::var("QWEN_RS_REF_DIR").expect("set QWEN_RS_REF_DIR (scripts/gpu-check.sh does)");
    let dir = Path::new(&root).join(shape);
    let ids: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(dir.join("ref_ids.json")).unwrap()).unwrap();
    let read = |name: &str| -> Vec<f32> {
        let raw = std::fs::read(dir.join(name)).unwrap();
        raw.as_chunks::<4>().0.iter().map(|c| f32::from_le_bytes(*c)).collect()
    };
    let (all, all_bf16) = (read("ref_logits.f32"), read("ref_logits_bf16.f32"));
    let (cfg, w) = qwen_rs::load_weights(&dir).unwrap();
    let vocab = cfg.vocab_size;
    assert_eq!(all.len(), ids.len() * vocab);
    let mut gpu = CudaEngine::new(Gpu::open().expect("a CUDA device"), cfg.clone(), &w, ids.len() + 8).unwrap();
    // The CPU twin on the same (bf16-valued) weights, for the smallest shape: tells a GPU fault from
    // a difference the reference itself shows.
    let cpu_all =
        (shape == "0.5b").then(|| CpuEngine::new(cfg, w.clone(), ids.len()).forward_tokens(&ids, 0, true).unwrap());
    drop(w);
    let (mut worst, mut worst_bf16, mut cpu_ref, mut cpu_gpu) = ((0f64, 0), 0f64, 0f64, 0f64);
    for (p, got) in stepwise(&mut gpu, &ids).iter().enumerate() {
        if let Some(c) = &cpu_all {
            let c = &c[p * vocab..(p + 1) * vocab];
            cpu_ref = cpu_ref.max(rel_l2(c, &all[p * vocab..(p + 1) * vocab]));
            cpu_gpu = cpu_gpu.max(rel_l2(got, c));
        }
        let err = rel_l2(got, &all[p * vocab..(p + 1) * vocab]);
        if err > worst.0 {
            worst = (err, p);
        }
        worst_bf16 = worst_bf16.max(rel_l2(got, &all_bf16[p * vocab..(p + 1) * vocab]));
    }
    println!(
        "{shape}: {} positions, worst rel L2 vs the reference {:.2e} at position {}; \
         vs transformers all-bf16 {worst_bf16:.2e}",
        ids.len(),
        worst.0,
        worst.1
    );
    if cpu_all.is_some() {
        println!("{shape}: CPU engine vs reference {cpu_ref:.2e}; GPU vs CPU engine {cpu_gpu:.2e}");
    }
    assert!(worst.0 <= 2e-2, "{shape}: rel L2 {:.2e} at position {}", worst.0, worst.1);
    // The whole prompt in one call: the prompt products (for the 7B shape's largest ones
    // `matmul_wgmma` on an H100) instead of the decode kernels.
    let n = ids.len();
    let last = gpu.forward(&ids, 0).unwrap();
    let err = rel_l2(&last, &all[(n - 1) * vocab..n * vocab]);
    println!("{shape}: the {n}-token prompt in one call, last logits vs the reference: rel L2 {err:.2e}");
    assert!(err <= 2e-2, "{shape}: prompt in one call, rel L2 {err:.2e}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn full_size_0_5b_matches_transformers() {
    full_size("0.5b");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn full_size_1_5b_matches_transformers() {
    full_size("1.5b");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn full_size_7b_matches_transformers() {
    full_size("7b");
}

/// The real model: the first 16 greedy tokens of the haiku prompts are the CPU engine's, the CPU
/// running the model exactly as the GPU holds it (its GGUF weights dequantised, then rounded to
/// bf16; with unrounded f32 weights a near-tie can go the other way, as it once did at token 13).
#[test]
#[ignore = "needs a CUDA GPU"]
fn real_model_greedy_tokens_match_cpu() {
    let loaded = qwen_rs::load(&common::real_model()).unwrap();
    let mut gpu =
        CudaEngine::new(Gpu::open().expect("a CUDA device"), loaded.config.clone(), &loaded.weights, 256).unwrap();
    let mut cpu = CpuEngine::new(loaded.config.clone(), loaded.weights.rounded_to_bf16(), 256);
    for word in ["seven", "twenty-one", "forty-two", "fifty-nine"] {
        let prompt = format!("Write a haiku about GPU computing that includes the word \"{word}\".");
        let text = render(loaded.tokenizer.chat_template.as_deref(), &[Message::new("user", &prompt)]).unwrap();
        let ids = loaded.tokenizer.encode(&text).unwrap();
        let run = |e: &mut dyn Engine| {
            let mut s = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() }).unwrap();
            generate(e, &loaded.tokenizer, &ids, 16, &mut s, |_| Ok(())).unwrap().0
        };
        let (g, c) = (run(&mut gpu), run(&mut cpu));
        println!(
            "{word}: gpu {:?}\n      cpu {:?}",
            loaded.tokenizer.decode(&g).unwrap(),
            loaded.tokenizer.decode(&c).unwrap()
        );
        assert_eq!(g, c, "first 16 greedy tokens differ for {word}");
    }
}

/// The haiku test of tests/haiku.rs, on the GPU.
#[test]
#[ignore = "needs a CUDA GPU"]
fn real_model_haiku_on_gpu() {
    let loaded = qwen_rs::load(&common::real_model()).unwrap();
    let mut gpu =
        CudaEngine::new(Gpu::open().expect("a CUDA device"), loaded.config.clone(), &loaded.weights, 512).unwrap();
    common::haiku_test(&mut gpu, &loaded.tokenizer);
}
