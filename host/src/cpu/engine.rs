//! The CPU forward pass. Reads top-down like the model: embed, then per layer
//! `x += attn(norm(x))`, `x += mlp(norm(x))`, then the final norm and the LM head.

use rayon::prelude::*;

use super::ops::{attention, matmul, rmsnorm, rope, swiglu};
use crate::config::Config;
use crate::engine::{Engine, check_tokens};
use crate::error::Result;
use crate::kv::KvLayout;
use crate::weights::{Linear, Weights};

pub struct CpuEngine {
    cfg: Config,
    w: Weights,
    kv: KvLayout,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
}

impl CpuEngine {
    /// `max_seq`: the context length to allocate the KV cache for.
    pub fn new(cfg: Config, w: Weights, max_seq: usize) -> Self {
        let kv = KvLayout {
            layers: cfg.num_hidden_layers,
            kv_heads: cfg.num_key_value_heads,
            max_seq,
            head_dim: cfg.head_dim,
        };
        CpuEngine { k_cache: vec![0.0; kv.len()], v_cache: vec![0.0; kv.len()], cfg, w, kv }
    }

    pub fn weights(&self) -> &Weights {
        &self.w
    }

    /// Runs `tokens` at positions `start..start + tokens.len()` and returns the logits of every
    /// position (`[tokens, vocab]`) if `all_logits`, else of the last only.
    pub fn forward_tokens(&mut self, tokens: &[u32], start: usize, all_logits: bool) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        check_tokens(cfg, tokens, start, self.kv.max_seq)?;
        let t = tokens.len();
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (qd, kvd, inter) = (cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);

        // x: [t, h] — the residual stream.
        let mut x = vec![0f32; t * h];
        for (row, &tok) in x.chunks_exact_mut(h).zip(tokens) {
            let tok = tok as usize;
            row.copy_from_slice(&self.w.model.embed_tokens.data[tok * h..(tok + 1) * h]);
        }
        let mut xb = vec![0f32; t * h];
        let (mut q, mut k, mut v) = (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
        let mut att = vec![0f32; t * qd];
        let (mut gate, mut up) = (vec![0f32; t * inter], vec![0f32; t * inter]);

        for (l, layer) in self.w.model.layers.iter().enumerate() {
            // Attention block.
            rmsnorm(&mut xb, &x, &layer.input_layernorm.data, cfg.rms_norm_eps);
            linear(&mut q, &xb, t, &layer.self_attn.q_proj);
            linear(&mut k, &xb, t, &layer.self_attn.k_proj);
            linear(&mut v, &xb, t, &layer.self_attn.v_proj);
            for i in 0..t {
                let pos = start + i;
                rope(&mut q[i * qd..(i + 1) * qd], hd, pos, cfg.rope_theta);
                rope(&mut k[i * kvd..(i + 1) * kvd], hd, pos, cfg.rope_theta);
                for g in 0..cfg.num_key_value_heads {
                    let o = self.kv.offset(l, g, pos);
                    let src = i * kvd + g * hd;
                    self.k_cache[o..o + hd].copy_from_slice(&k[src..src + hd]);
                    self.v_cache[o..o + hd].copy_from_slice(&v[src..src + hd]);
                }
            }
            let (kc, vc, kv) = (&self.k_cache, &self.v_cache, &self.kv);
            att.par_chunks_mut(qd).zip(q.par_chunks(qd)).enumerate().for_each(|(i, (out, qi))| {
                attention(out, qi, kc, vc, kv, l, start + i + 1);
            });
            linear(&mut xb, &att, t, &layer.self_attn.o_proj);
            add(&mut x, &xb);

            // MLP block.
            rmsnorm(&mut xb, &x, &layer.post_attention_layernorm.data, cfg.rms_norm_eps);
            linear(&mut gate, &xb, t, &layer.mlp.gate_proj);
            linear(&mut up, &xb, t, &layer.mlp.up_proj);
            swiglu(&mut gate, &up);
            linear(&mut xb, &gate, t, &layer.mlp.down_proj);
            add(&mut x, &xb);
        }

        let rows = if all_logits { t } else { 1 };
        let last = &x[(t - rows) * h..];
        let mut normed = vec![0f32; rows * h];
        rmsnorm(&mut normed, last, &self.w.model.norm.data, cfg.rms_norm_eps);
        let mut logits = vec![0f32; rows * cfg.vocab_size];
        matmul(&mut logits, &normed, rows, &self.w.lm_head().data, cfg.vocab_size, None);
        Ok(logits)
    }
}

fn linear(out: &mut [f32], x: &[f32], tokens: usize, lin: &Linear) {
    matmul(out, x, tokens, &lin.weight.data, lin.weight.shape[0], lin.bias.as_ref().map(|b| b.data.as_slice()));
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

impl Engine for CpuEngine {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
    fn max_seq(&self) -> usize {
        self.kv.max_seq
    }
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>> {
        self.forward_tokens(tokens, start, false)
    }
}
