//! What the generation loop needs from an engine, CPU or CUDA.

use crate::error::Result;

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
}
