//! Choosing the next token from the logits, as llama.cpp does: repetition penalty, then greedy
//! (temperature 0) or top-k → temperature → top-p → a draw from a seeded ChaCha8 generator, so the
//! same seed gives the same text.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cpu::ops::argmax;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability adds up to `top_p` (0 < top_p ≤ 1).
    pub top_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this; 1 is off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.95, repeat_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplingParams {
    /// Checks every field; the message names the command-line flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Usage(m));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("--temperature {} must be 0 (greedy) or a positive number", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("--top-p {} must be in (0, 1]", self.top_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(format!("--repeat-penalty {} must be a positive number (1 is off)", self.repeat_penalty));
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Sampler { params, rng })
    }

    pub fn is_greedy(&self) -> bool {
        self.params.temperature == 0.0
    }

    /// Whether the choice depends on more than the argmax of the logits.
    pub fn needs_logits(&self) -> bool {
        !self.is_greedy() || self.params.repeat_penalty != 1.0
    }

    /// The next token given `logits` (modified in place) and the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut seen: Vec<u32> = recent.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / p.repeat_penalty } else { *l * p.repeat_penalty };
                }
            }
        }
        if self.is_greedy() {
            return argmax(logits) as u32;
        }
        // Candidates, most likely first.
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        let k = if p.top_k == 0 { cand.len() } else { p.top_k.min(cand.len()) };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cand.truncate(k);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Softmax at the temperature.
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|c| ((c.1 - max) / p.temperature).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        // Nucleus: keep the head whose mass first reaches top_p.
        let mut keep = probs.len();
        let mut acc = 0.0;
        for (i, &pr) in probs.iter().enumerate() {
            acc += pr;
            if acc >= p.top_p {
                keep = i + 1;
                break;
            }
        }
        let mass: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f32>() * mass;
        for i in 0..keep {
            r -= probs[i];
            if r <= 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(n: usize, salt: u32) -> Vec<f32> {
        (0..n as u32).map(|i| ((i.wrapping_mul(2654435761).wrapping_add(salt)) % 1000) as f32 / 100.0).collect()
    }

    fn run(params: SamplingParams) -> Vec<u32> {
        let mut s = Sampler::new(params).unwrap();
        let mut history = Vec::new();
        for step in 0..50 {
            let t = s.sample(&mut logits(1000, step), &history);
            history.push(t);
        }
        history
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 42, ..Default::default() };
        assert_eq!(run(p.clone()), run(p.clone()));
        assert_ne!(run(p.clone()), run(SamplingParams { seed: 43, ..p }));
    }

    #[test]
    fn greedy_is_the_argmax() {
        let mut s = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() }).unwrap();
        let mut l = vec![0.0, 3.0, 1.0, 3.0];
        assert_eq!(s.sample(&mut l, &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_head() {
        let l = logits(1000, 7);
        let best = argmax(&l) as u32;
        for seed in 0..20 {
            let mut s =
                Sampler::new(SamplingParams { temperature: 1.0, top_k: 1, seed, ..Default::default() }).unwrap();
            assert_eq!(s.sample(&mut l.clone(), &[]), best);
            // A tiny nucleus holds only the most likely token.
            let mut s =
                Sampler::new(SamplingParams { temperature: 1.0, top_k: 0, top_p: 1e-6, seed, ..Default::default() })
                    .unwrap();
            assert_eq!(s.sample(&mut l.clone(), &[]), best);
        }
    }

    #[test]
    fn repeat_penalty_pushes_seen_tokens_down() {
        let mut s =
            Sampler::new(SamplingParams { temperature: 0.0, repeat_penalty: 2.0, ..Default::default() }).unwrap();
        let mut l = vec![1.0, 3.0, 2.0];
        assert_eq!(s.sample(&mut l, &[1]), 2); // 3.0 / 2 = 1.5 < 2.0
        assert_eq!(l, vec![1.0, 1.5, 2.0]);
    }

    #[test]
    fn bad_parameters_name_their_flag() {
        let e = SamplingParams { top_p: 1.5, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("--top-p 1.5"));
        let e = SamplingParams { temperature: f32::NAN, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("--temperature"));
    }
}
