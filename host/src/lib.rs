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
    // The tokenizer (~150k tokens and merges, built on one thread: ~0.6 s for the default model)
    // is made while the weights are read and converted on the other cores.
    let (tokenizer, weights) = std::thread::scope(|s| {
        let tokenizer = s.spawn(|| match &ck {
            Checkpoint::Gguf(g) => Tokenizer::from_gguf(g),
            Checkpoint::Hf(h) => Tokenizer::from_hf_dir(&h.dir),
        });
        let weights = Weights::load(&ck, &config);
        (tokenizer.join(), weights)
    });
    let tokenizer = tokenizer.map_err(|_| Error::invalid(ck.path(), "building the tokenizer panicked"))??;
    let weights = weights?;
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
    Ok(Loaded { config, weights, tokenizer })
}
