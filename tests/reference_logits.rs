//! The CPU engine against Hugging Face transformers (float64) on tiny random Qwen2 checkpoints,
//! loaded both from the safetensors directory and from a GGUF of the same weights.
//! Fixtures: tests/fixtures/, made by scripts/fixtures/make_tiny_models.py and hf_logits.py.

use std::path::PathBuf;

use qwen_rs::cpu::CpuEngine;

struct Reference {
    token_ids: Vec<u32>,
    logits: Vec<Vec<f64>>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn reference(model: &str) -> Reference {
    let path = fixture(model).join("hf_logits.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    Reference {
        token_ids: v["token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
        logits: v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect(),
    }
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(g, w)| (*g as f64 - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

/// Whole-prompt prefill (every position's logits), then the same tokens again as a short prefill
/// followed by one-token decode steps through the KV cache.
fn check(path: PathBuf, model: &str) {
    let r = reference(model);
    let (cfg, w) = qwen_rs::load_weights(&path).unwrap_or_else(|e| panic!("{e}"));
    let vocab = cfg.vocab_size;
    let mut eng = CpuEngine::new(cfg, w, 64);
    let all = eng.forward_tokens(&r.token_ids, 0, true).unwrap();
    let mut worst = 0f64;
    for (p, want) in r.logits.iter().enumerate() {
        let err = rel_l2(&all[p * vocab..(p + 1) * vocab], want);
        worst = worst.max(err);
        assert!(err <= 1e-4, "{}: prefill position {p}: rel L2 {err:.2e}", path.display());
    }
    let split = 5;
    let mut eng2 = eng;
    let first = eng2.forward_tokens(&r.token_ids[..split], 0, false).unwrap();
    assert!(rel_l2(&first, &r.logits[split - 1]) <= 1e-4);
    for p in split..r.token_ids.len() {
        let step = eng2.forward_tokens(&r.token_ids[p..p + 1], p, false).unwrap();
        let err = rel_l2(&step, &r.logits[p]);
        worst = worst.max(err);
        assert!(err <= 1e-4, "{}: decode position {p}: rel L2 {err:.2e}", path.display());
    }
    println!("{}: worst rel L2 {worst:.2e} over {} positions", path.display(), r.logits.len());
}

#[test]
fn tiny_hd64_safetensors_matches_transformers() {
    check(fixture("tiny-hd64"), "tiny-hd64");
}

#[test]
fn tiny_hd64_gguf_matches_transformers() {
    check(fixture("tiny-hd64.gguf"), "tiny-hd64");
}

#[test]
fn tiny_hd128_safetensors_matches_transformers() {
    check(fixture("tiny-hd128"), "tiny-hd128");
}

#[test]
fn tiny_hd128_gguf_matches_transformers() {
    check(fixture("tiny-hd128.gguf"), "tiny-hd128");
}

/// The same weights stored as bf16 load to the bf16-rounded values (and so give nearly the same
/// logits): exercises the bf16 safetensors path.
#[test]
fn bf16_safetensors_loads() {
    use half::bf16;
    use safetensors::tensor::{Dtype, TensorView};
    let src = fixture("tiny-hd64");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut converted: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let data: Vec<u8> = view
            .data()
            .as_chunks::<4>()
            .0
            .iter()
            .flat_map(|c| bf16::from_f32(f32::from_le_bytes(*c)).to_le_bytes())
            .collect();
        converted.push((name, view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView)> =
        converted.iter().map(|(n, s, d)| (n.clone(), TensorView::new(Dtype::BF16, s.clone(), d).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();

    let (_, w32) = qwen_rs::load_weights(&src).unwrap();
    let (_, w16) = qwen_rs::load_weights(dir.path()).unwrap();
    let a = &w32.model.layers[1].mlp.down_proj.weight.data;
    let b = &w16.model.layers[1].mlp.down_proj.weight.data;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(bf16::from_f32(*x).to_f32(), *y);
    }
    assert!(w16.lm_head.is_some(), "tiny-hd64 has its own lm_head");
}

/// A checkpoint split into shards with `model.safetensors.index.json` loads to the same weights.
#[test]
fn sharded_safetensors_load() {
    use safetensors::tensor::TensorView;
    let src = fixture("tiny-hd64");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        let views: Vec<(String, TensorView)> = part.iter().map(|n| (n.clone(), st.tensor(n).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &dir.path().join(shard)).unwrap();
        for n in part {
            weight_map.insert(n.clone(), serde_json::json!(shard));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let (_, whole) = qwen_rs::load_weights(&src).unwrap();
    let (_, sharded) = qwen_rs::load_weights(dir.path()).unwrap();
    assert_eq!(whole.model.layers[1].self_attn.v_proj.bias, sharded.model.layers[1].self_attn.v_proj.bias);
    assert_eq!(whole.lm_head, sharded.lm_head);
    assert_eq!(whole.model.embed_tokens, sharded.model.embed_tokens);
    check(dir.path().to_path_buf(), "tiny-hd64");
}
