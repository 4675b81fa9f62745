//! The generation loop shared by both engines: prefill the prompt, then sample and decode one
//! token at a time until a stop token, `--max-tokens`, or the end of the context.

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sampling::Sampler;
use crate::tokenizer::{StreamDecoder, Tokenizer};

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
}

impl Stats {
    pub fn prefill_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }
    /// Decode speed over the tokens after the first (the first comes from the prefill).
    pub fn decode_tok_s(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

/// Generates after `prompt`, calling `on_text` with each piece of text as it completes.
/// Returns the generated ids (stop token excluded) and the timings.
pub fn generate(
    engine: &mut dyn Engine,
    tok: &Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    mut on_text: impl FnMut(&str) -> Result<()>,
) -> Result<(Vec<u32>, Stats)> {
    if prompt.is_empty() {
        return Err(Error::Usage("the prompt is empty".into()));
    }
    if prompt.len() >= engine.max_seq() {
        return Err(Error::Usage(format!(
            "the prompt is {} tokens, which leaves no room in the context of {} tokens (raise --ctx-size or shorten the prompt)",
            prompt.len(),
            engine.max_seq()
        )));
    }
    let mut stats = Stats { prompt_tokens: prompt.len(), ..Default::default() };
    let t0 = Instant::now();
    let mut logits = engine.forward(prompt, 0)?;
    stats.prefill = t0.elapsed();

    let mut history = prompt.to_vec();
    let mut out = Vec::new();
    let mut stream = StreamDecoder::new();
    let t1 = Instant::now();
    while out.len() < max_tokens {
        let next = sampler.sample(&mut logits, &history);
        if tok.eos_ids.contains(&next) {
            break;
        }
        out.push(next);
        history.push(next);
        if let Some(text) = stream.push(tok, next)? {
            on_text(&text)?;
        }
        if out.len() == max_tokens || history.len() >= engine.max_seq() {
            break;
        }
        logits = engine.forward(&[next], history.len() - 1)?;
    }
    stats.decode = t1.elapsed();
    stats.generated_tokens = out.len();
    Ok((out, stats))
}
