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
    let (config, weights, tokenizer) = load_with(path, |_, w| Ok::<_, Error>(w))?;
    Ok(Loaded { config, weights, tokenizer })
}

/// Loads a model and hands its weights to `build` (which may upload them to a device and make an
/// engine) while the tokenizer is still being built: the tokenizer (~150k tokens and merges for
/// the default model, made on one thread) is built on its own thread from the start,
/// beside the weights' reading and conversion (on every core) and `build`. Returns the config,
/// what `build` made, and the tokenizer.
pub fn load_with<T, X: From<Error>>(
    path: &Path,
    build: impl FnOnce(&Config, Weights) -> std::result::Result<T, X>,
) -> std::result::Result<(Config, T, Tokenizer), X> {
    let ck = Checkpoint::open(path)?;
    let config = ck.config()?;
    std::thread::scope(|s| {
        let tokenizer = s.spawn(|| match &ck {
            Checkpoint::Gguf(g) => Tokenizer::from_gguf(g),
            Checkpoint::Hf(h) => Tokenizer::from_hf_dir(&h.dir),
        });
        let built = Weights::load(&ck, &config).map_err(X::from).and_then(|w| build(&config, w));
        let tokenizer =
            tokenizer.join().map_err(|_| Error::invalid(ck.path(), "building the tokenizer panicked"))??;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::invalid(
                ck.path(),
                format!(
                    "the tokenizer has {} tokens but the model only {} embeddings",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            )
            .into());
        }
        Ok((config.clone(), built?, tokenizer))
    })
}
