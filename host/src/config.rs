//! Model hyper-parameters, read from a Hugging Face `config.json` or from GGUF `qwen2.*` metadata.
//! Nothing is hard-coded: any dense Qwen2/Qwen2.5 size loads (head_dim 64 and 128 alike).

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gguf::Gguf;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// The longest context the model was trained for.
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub tie_word_embeddings: bool,
}

/// The subset of a Hugging Face `config.json` that a Qwen2 model needs.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f32,
    /// transformers 4.x writes `rope_theta` (and `rope_scaling`) at the top level …
    rope_theta: Option<f32>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    /// … transformers 5.x writes `rope_parameters: {rope_type, rope_theta, …}` instead.
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    tie_word_embeddings: bool,
}

fn default_max_positions() -> usize {
    32768
}
fn default_eps() -> f32 {
    1e-6
}
fn default_theta() -> f32 {
    1_000_000.0
}

/// `hidden / heads` when the file gives no head size; the heads must divide the hidden size.
fn derived_head_dim(path: &Path, hidden: usize, heads: usize) -> Result<usize> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(Error::invalid(
            path,
            format!(
                "the hidden size {hidden} is not a multiple of the {heads} attention heads (and no head size is given)"
            ),
        ));
    }
    Ok(hidden / heads)
}

impl Config {
    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path, text: &str) -> Result<Self> {
        let c: HfConfig = serde_json::from_str(text)
            .map_err(|e| Error::invalid(path, format!("not a valid Qwen2 config.json: {e}")))?;
        if let Some(t) = &c.model_type
            && t != "qwen2"
        {
            return Err(Error::invalid(
                path,
                format!("model_type is `{t}`; qwen-rs runs Qwen2/Qwen2.5 models (`qwen2`)"),
            ));
        }
        let heads = c.num_attention_heads;
        let params = c.rope_parameters.as_ref().filter(|v| !v.is_null());
        for scaling in [c.rope_scaling.as_ref(), params].into_iter().flatten().filter(|v| !v.is_null()) {
            let ty =
                scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
            if ty != "default" {
                return Err(Error::invalid(
                    path,
                    format!("rope type `{ty}` is not supported (only the default rotary embedding is)"),
                ));
            }
        }
        let rope_theta = match (c.rope_theta, params.and_then(|p| p.get("rope_theta")).and_then(|t| t.as_f64())) {
            (Some(t), _) => t,
            (None, Some(t)) => t as f32,
            (None, None) => default_theta(),
        };
        let cfg = Config {
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: c.num_key_value_heads.unwrap_or(heads),
            head_dim: match c.head_dim {
                Some(d) => d,
                None => derived_head_dim(path, c.hidden_size, heads)?,
            },
            vocab_size: c.vocab_size,
            max_position_embeddings: c.max_position_embeddings,
            rms_norm_eps: c.rms_norm_eps,
            rope_theta,
            tie_word_embeddings: c.tie_word_embeddings,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads `qwen2.*` metadata. `vocab_size` comes from the embedding tensor, and tying from
    /// whether the file has its own `output.weight`.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.get_str("general.architecture")?;
        if arch != "qwen2" {
            return Err(Error::invalid(
                &g.path,
                format!("general.architecture is `{arch}`; qwen-rs runs Qwen2/Qwen2.5 models (`qwen2`)"),
            ));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let usize_of = |k: &str| -> Result<usize> {
            let v = g.get_u64(&key(k))?;
            usize::try_from(v).map_err(|_| Error::invalid(&g.path, format!("metadata `{}` = {v} is too large", key(k))))
        };
        let hidden = usize_of("embedding_length")?;
        let heads = usize_of("attention.head_count")?;
        let kv_heads = match g.get(&key("attention.head_count_kv")) {
            Some(_) => usize_of("attention.head_count_kv")?,
            None => heads,
        };
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => usize_of("attention.key_length")?,
            None => derived_head_dim(&g.path, hidden, heads)?,
        };
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::invalid(&g.path, "tensor `token_embd.weight` is missing"))?;
        let vocab_size = embd.shape()[0];
        let cfg = Config {
            hidden_size: hidden,
            intermediate_size: usize_of("feed_forward_length")?,
            num_hidden_layers: usize_of("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            vocab_size,
            max_position_embeddings: usize_of("context_length")?,
            rms_norm_eps: g.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta: match g.get(&key("rope.freq_base")) {
                Some(_) => g.get_f32(&key("rope.freq_base"))?,
                None => default_theta(),
            },
            tie_word_embeddings: g.tensor("output.weight").is_none(),
        };
        cfg.validate(&g.path)?;
        Ok(cfg)
    }

    /// Refuses dimensions no real model has, before anything is allocated from them.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid(path, msg));
        let dims = [
            ("hidden_size", self.hidden_size, 1 << 16),
            ("intermediate_size", self.intermediate_size, 1 << 18),
            ("num_hidden_layers", self.num_hidden_layers, 1024),
            ("num_attention_heads", self.num_attention_heads, 1024),
            ("num_key_value_heads", self.num_key_value_heads, 1024),
            ("head_dim", self.head_dim, 1024),
            ("vocab_size", self.vocab_size, 1 << 22),
            ("max_position_embeddings", self.max_position_embeddings, 1 << 24),
        ];
        for (name, v, max) in dims {
            if v == 0 || v > max {
                return bad(format!("{name} = {v} is out of range (1..={max})"));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} is odd; rotary embeddings need an even head_dim", self.head_dim));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!("rms_norm_eps {} must be a positive number", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("rope_theta {} must be a number above 1", self.rope_theta));
        }
        Ok(())
    }

    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936"#;

    fn parse(extra: &str) -> Result<Config> {
        Config::from_hf_json(Path::new("config.json"), &format!("{{{BASE}{extra}}}"))
    }

    #[test]
    fn rope_theta_from_either_layout() {
        assert_eq!(parse(r#", "rope_theta": 10000.0"#).unwrap().rope_theta, 10000.0);
        let v5 = r#", "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}"#;
        assert_eq!(parse(v5).unwrap().rope_theta, 5000.0);
        assert_eq!(parse("").unwrap().rope_theta, 1_000_000.0);
        assert_eq!(parse("").unwrap().head_dim, 64);
    }

    #[test]
    fn unsupported_rope_scaling_is_refused() {
        let yarn = r#", "rope_scaling": {"type": "yarn", "factor": 4.0}"#;
        assert!(parse(yarn).unwrap_err().to_string().contains("yarn"));
        assert!(parse(r#", "rope_scaling": null"#).is_ok());
    }

    #[test]
    fn bad_dimensions_are_refused() {
        let e = Config::from_hf_json(
            Path::new("c.json"),
            &format!("{{{}}}", BASE.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3")),
        );
        assert!(e.unwrap_err().to_string().contains("not a multiple"));
        assert!(parse(r#", "model_type": "llama""#).is_err());
    }
}
