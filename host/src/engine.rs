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
}
