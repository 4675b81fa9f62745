//! What the generation loop needs from an engine, CPU or CUDA.

use crate::config::Config;
use crate::error::{Error, Result};

/// What every engine checks before a forward pass: some tokens, room for them in the KV cache of
/// `max_seq` positions from `start`, and every id inside the vocabulary.
pub fn check_tokens(cfg: &Config, tokens: &[u32], start: usize, max_seq: usize) -> Result<()> {
    if tokens.is_empty() {
        return Err(Error::Usage("no tokens to run".into()));
    }
    if start + tokens.len() > max_seq {
        return Err(Error::Usage(format!(
            "{} tokens do not fit the context of {} (raise --ctx-size, up to the model's {})",
            start + tokens.len(),
            max_seq,
            cfg.max_position_embeddings
        )));
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        return Err(Error::Usage(format!("token id {bad} is outside the vocabulary ({})", cfg.vocab_size)));
    }
    Ok(())
}

pub trait Engine {
    /// A short description for the stats line ("cpu (2 threads)", "cuda (NVIDIA H100 80GB HBM3)").
    fn name(&self) -> String;
    /// The context length the KV cache was allocated for.
    fn max_seq(&self) -> usize;
    /// Runs `tokens` at positions `start..start + tokens.len()`, appending their keys and values to
    /// the cache, and returns the logits of the last one (`[vocab]`).
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>>;
    /// Like [`Engine::forward`], but returns only the most likely next token (greedy decoding).
    /// The CUDA engine takes the argmax on the device and copies back one id instead of the logits.
    fn forward_greedy(&mut self, tokens: &[u32], start: usize) -> Result<u32> {
        Ok(crate::cpu::ops::argmax(&self.forward(tokens, start)?) as u32)
    }
    /// `n` greedy steps: runs `first` at position `start`, then each chosen token at the next
    /// position, and returns the `n` chosen tokens (the last of them not run yet). The CUDA engine
    /// runs the steps back to back on the device and waits once, at the end.
    fn decode_greedy(&mut self, first: u32, start: usize, n: usize) -> Result<Vec<u32>> {
        let mut chosen = Vec::with_capacity(n);
        let mut next = first;
        for i in 0..n {
            next = self.forward_greedy(&[next], start + i)?;
            chosen.push(next);
        }
        Ok(chosen)
    }
}
