//! qwen-rs: Qwen2/Qwen2.5 text generation. The host side — model loading, tokenizer and chat,
//! the CPU reference engine, sampling, and the CUDA side that launches the Rust-written kernels
//! of `kernels-gpu` — lives in this crate; the `qwen-rs` binary (`main.rs`) is its command line.

pub mod bench;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod kv;
pub mod quant;
pub mod sampling;
pub mod tokenizer;
pub mod weights;

use std::path::Path;

pub use error::{Error, Result};

use checkpoint::Checkpoint;
use config::Config;
use tokenizer::Tokenizer;
use weights::Weights;

/// A model as loaded from disk: hyper-parameters, f32 weights and tokenizer.
pub struct Loaded {
    pub config: Config,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
}

/// Loads config and weights (no tokenizer) from a `.gguf` file or a Hugging Face directory.
pub fn load_weights(path: &Path) -> Result<(Config, Weights)> {
    let ck = Checkpoint::open(path)?;
    let cfg = ck.config()?;
    let w = Weights::load(&ck, &cfg)?;
    Ok((cfg, w))
}

/// Loads everything needed to chat with a model.
pub fn load(path: &Path) -> Result<Loaded> {
    let ck = Checkpoint::open(path)?;
    let config = ck.config()?;
    let tokenizer = match &ck {
        Checkpoint::Gguf(g) => Tokenizer::from_gguf(g)?,
        Checkpoint::Hf(h) => Tokenizer::from_hf_dir(&h.dir)?,
    };
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(Error::invalid(
            ck.path(),
            format!(
                "the tokenizer has {} tokens but the model only {} embeddings",
                tokenizer.vocab_size(),
                config.vocab_size
            ),
        ));
    }
    let weights = Weights::load(&ck, &config)?;
    Ok(Loaded { config, weights, tokenizer })
}
