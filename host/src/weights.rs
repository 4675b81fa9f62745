//! The weights as plain structs that mirror the checkpoint: a reader maps
//! `model.layers.3.self_attn.k_proj.weight` to `weights.model.layers[3].self_attn.k_proj.weight`
//! without a table. Every tensor is f32 here (the CPU engine's format); the CUDA engine converts
//! to bf16 on upload.

use crate::checkpoint::{Checkpoint, Tensor};
use crate::config::Config;
use crate::error::{Error, Result};

/// `y = x·Wᵀ + b` with `W: [out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_layernorm: Tensor,
    pub self_attn: Attention,
    pub post_attention_layernorm: Tensor,
    pub mlp: Mlp,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: Tensor,
}

#[derive(Debug, Clone)]
pub struct Weights {
    pub model: Model,
    /// `None` when the checkpoint ties the LM head to `model.embed_tokens`.
    pub lm_head: Option<Tensor>,
}

impl Weights {
    /// The LM head matrix `[vocab, hidden]`: its own, or the tied embedding.
    pub fn lm_head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.model.embed_tokens)
    }

    /// Every tensor rounded to bf16 and back: the model exactly as the CUDA engine holds it, so the
    /// CPU engine can serve as its twin on the same numbers.
    pub fn rounded_to_bf16(&self) -> Self {
        let mut w = self.clone();
        let round = |t: &mut Tensor| t.data.iter_mut().for_each(|v| *v = half::bf16::from_f32(*v).to_f32());
        round(&mut w.model.embed_tokens);
        round(&mut w.model.norm);
        if let Some(h) = &mut w.lm_head {
            round(h);
        }
        for l in &mut w.model.layers {
            round(&mut l.input_layernorm);
            round(&mut l.post_attention_layernorm);
            for lin in [
                &mut l.self_attn.q_proj,
                &mut l.self_attn.k_proj,
                &mut l.self_attn.v_proj,
                &mut l.self_attn.o_proj,
                &mut l.mlp.gate_proj,
                &mut l.mlp.up_proj,
                &mut l.mlp.down_proj,
            ] {
                round(&mut lin.weight); // biases stay f32 on the GPU too
            }
        }
        w
    }

    pub fn load(ck: &Checkpoint, cfg: &Config) -> Result<Self> {
        let required = |name: &str, shape: &[usize]| -> Result<Tensor> {
            ck.tensor(name, shape)?.ok_or_else(|| Error::invalid(ck.path(), format!("tensor `{name}` is missing")))
        };
        let linear = |prefix: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let weight = required(&format!("{prefix}.weight"), &[out, inp])?;
            let bias = if bias { Some(required(&format!("{prefix}.bias"), &[out])?) } else { None };
            Ok(Linear { weight, bias })
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let (q, kv) = (cfg.q_dim(), cfg.kv_dim());

        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            layers.push(DecoderLayer {
                input_layernorm: required(&format!("{p}.input_layernorm.weight"), &[h])?,
                self_attn: Attention {
                    q_proj: linear(&format!("{p}.self_attn.q_proj"), q, h, true)?,
                    k_proj: linear(&format!("{p}.self_attn.k_proj"), kv, h, true)?,
                    v_proj: linear(&format!("{p}.self_attn.v_proj"), kv, h, true)?,
                    o_proj: linear(&format!("{p}.self_attn.o_proj"), h, q, false)?,
                },
                post_attention_layernorm: required(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                mlp: Mlp {
                    gate_proj: linear(&format!("{p}.mlp.gate_proj"), i, h, false)?,
                    up_proj: linear(&format!("{p}.mlp.up_proj"), i, h, false)?,
                    down_proj: linear(&format!("{p}.mlp.down_proj"), h, i, false)?,
                },
            });
        }
        let model = Model {
            embed_tokens: required("model.embed_tokens.weight", &[cfg.vocab_size, h])?,
            layers,
            norm: required("model.norm.weight", &[h])?,
        };
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            // HF configs sometimes say "untied" for checkpoints that store no lm_head: fall back to
            // the embedding as candle and transformers do.
            ck.tensor("lm_head.weight", &[cfg.vocab_size, h])?
        };
        Ok(Weights { model, lm_head })
    }
}
