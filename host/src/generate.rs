//! The generation loop shared by both engines: prefill the prompt, then sample and decode one
//! token at a time until a stop token, `--max-tokens`, or the end of the context (greedy tokens
//! asked of the engine [`GREEDY_STEPS`] at a time).

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
                // as many steps as the loop may still use: tokens left to emit, and room for
                // their tokens in the context (the loop stops once the history fills it)
                let n = (max_tokens - out.len()).min(engine.max_seq() - history.len()).min(GREEDY_STEPS);
                ahead.extend(engine.decode_greedy(next, pos, n)?);
            }
            next = ahead.pop_front().ok_or_else(|| Error::Usage("the engine ran no decode step".into()))?;
        }
    }
    stats.decode = t1.elapsed();
    stats.generated_tokens = out.len();
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::{GREEDY_STEPS, generate};
    use crate::engine::Engine;
    use crate::error::Result;
    use crate::sampling::{Sampler, SamplingParams};
    use crate::tokenizer::Tokenizer;

    /// An engine whose logits after position `p` pick token `(3p + 1) mod 10`; it counts the
    /// steps it runs, the latest position and the most steps asked of it at once.
    struct Counting {
        max_seq: usize,
        steps: usize,
        last_pos: usize,
        widest: usize,
    }

    fn choice(p: usize) -> u32 {
        ((3 * p + 1) % 10) as u32
    }

    impl Engine for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        fn max_seq(&self) -> usize {
            self.max_seq
        }
        fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>> {
            let p = start + tokens.len() - 1;
            assert!(p < self.max_seq, "ran position {p} of a context of {}", self.max_seq);
            (self.steps, self.last_pos) = (self.steps + 1, p);
            let mut logits = vec![0.0; 10];
            logits[choice(p) as usize] = 1.0;
            Ok(logits)
        }
        fn decode_greedy(&mut self, first: u32, start: usize, n: usize) -> Result<Vec<u32>> {
            self.widest = self.widest.max(n);
            let mut next = first;
            (0..n).map(|i| self.forward_greedy(&[next], start + i).inspect(|&t| next = t)).collect()
        }
    }

    /// A word-level tokenizer of the ten ids `t0` … `t9`, stopping at `eos`.
    fn tokenizer(eos: &[u32]) -> Tokenizer {
        use tokenizers::models::wordlevel::WordLevel;
        let vocab = (0..10u32).map(|i| (format!("t{i}"), i)).collect();
        let model = WordLevel::builder().vocab(vocab).unk_token("t0".into()).build().unwrap();
        Tokenizer { inner: tokenizers::Tokenizer::new(model), eos_ids: eos.to_vec(), chat_template: None }
    }

    fn run(max_seq: usize, max_tokens: usize, eos: &[u32]) -> (Vec<u32>, Counting) {
        let mut engine = Counting { max_seq, steps: 0, last_pos: 0, widest: 0 };
        let mut greedy = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() }).unwrap();
        let (out, _) = generate(&mut engine, &tokenizer(eos), &[5, 5], max_tokens, &mut greedy, |_| Ok(())).unwrap();
        (out, engine)
    }

    /// Greedy steps asked of the engine several at a time give the tokens one at a time would
    /// (after the 2-token prompt: positions 1, 2, … choose 4, 7, 0, 3, 6, 9, …), and never run
    /// past the context or more steps than `--max-tokens` can use.
    #[test]
    fn greedy_steps_in_batches() {
        // Stop token 9, chosen after position 6: five tokens, and the batch of eight ran on
        // (positions 2..10) past it.
        let (out, e) = run(64, 100, &[9]);
        assert_eq!(out, [4, 7, 0, 3, 6]);
        assert_eq!((e.steps, e.widest), (1 + GREEDY_STEPS, GREEDY_STEPS));
        // --max-tokens 3: exactly the two decode steps it needs.
        let (out, e) = run(64, 3, &[]);
        assert_eq!(out, [4, 7, 0]);
        assert_eq!((e.steps, e.last_pos), (3, 3));
        // A context of 6: the prompt and four tokens fill it; the last position run is 4.
        let (out, e) = run(6, 100, &[]);
        assert_eq!(out, [4, 7, 0, 3]);
        assert_eq!((e.steps, e.last_pos), (4, 4));
        // A long answer: every token as one step at a time would choose it.
        let (out, _) = run(64, 30, &[]);
        assert_eq!(out, (1..31).map(choice).collect::<Vec<_>>());
    }
}
