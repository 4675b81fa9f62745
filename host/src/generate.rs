//! The generation loop shared by both engines: prefill the prompt, then sample and decode one
//! token at a time until a stop token, `--max-tokens`, or the end of the context.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sampling::Sampler;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Set (by the command line's Ctrl-C handler) to end generation after the current token.
pub static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Greedy decode steps asked of the engine at once ([`Engine::decode_greedy`]): the CUDA engine
/// then waits for the GPU once every this many tokens instead of after each. Up to this many − 1
/// steps past a stop token run and are thrown away (~5 ms for the 0.5B model on an H100).
pub const GREEDY_STEPS: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Generation ended early because [`STOP_REQUESTED`] was set.
    pub interrupted: bool,
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
    // Greedy decoding without a penalty needs only the argmax, which the engine may compute itself.
    let greedy = !sampler.needs_logits();
    let mut step = |engine: &mut dyn Engine, tokens: &[u32], start: usize, history: &[u32]| -> Result<u32> {
        if greedy {
            engine.forward_greedy(tokens, start)
        } else {
            let mut logits = engine.forward(tokens, start)?;
            Ok(sampler.sample(&mut logits, history))
        }
    };
    let t0 = Instant::now();
    let mut next = step(engine, prompt, 0, prompt)?;
    stats.prefill = t0.elapsed();

    let mut history = prompt.to_vec();
    let mut out = Vec::new();
    // Greedy tokens the engine has chosen ahead of the loop.
    let mut ahead = std::collections::VecDeque::new();
    let mut stream = StreamDecoder::new();
    let t1 = Instant::now();
    while out.len() < max_tokens {
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
        if STOP_REQUESTED.load(Ordering::Relaxed) {
            stats.interrupted = true;
            break;
        }
        let pos = history.len() - 1;
        if !greedy {
            next = step(engine, &[next], pos, &history)?;
        } else {
            if ahead.is_empty() {
                // as many steps as the loop may still use: tokens left to emit, positions left
                let n = (max_tokens - out.len()).min(engine.max_seq() - pos).min(GREEDY_STEPS);
                ahead.extend(engine.decode_greedy(next, pos, n)?);
            }
            next = ahead.pop_front().ok_or_else(|| Error::Usage("the engine ran no decode step".into()))?;
        }
    }
    stats.decode = t1.elapsed();
    stats.generated_tokens = out.len();
    Ok((out, stats))
}
