//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The real default model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M), which CI's setup fetches.
/// Missing it is a failure, not a skip: run `cargo run --release -- fetch` first.
pub fn real_model() -> PathBuf {
    match qwen_rs::fetch::cached() {
        Ok(Some(p)) => p,
        _ => panic!(
            "the default model is not cached at {:?}: run `cargo run --release -- fetch` (scripts/setup.sh does)",
            qwen_rs::fetch::default_model_path().ok()
        ),
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A minimal GGUF writer for hand-made (often broken) test files.
pub struct GgufBuilder {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder { kv: Vec::new(), n_kv: 0, infos: Vec::new(), n_tensors: 0, data: Vec::new() }
    }

    fn string(buf: &mut Vec<u8>, s: &str) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    }

    pub fn kv_str(mut self, key: &str, v: &str) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(8u32.to_le_bytes());
        Self::string(&mut self.kv, v);
        self.n_kv += 1;
        self
    }

    pub fn kv_u32(mut self, key: &str, v: u32) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }

    pub fn kv_f32(mut self, key: &str, v: f32) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }

    /// A tensor of ggml type id `ty` with GGUF dims (fastest first) and raw bytes.
    pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, bytes: &[u8]) -> Self {
        Self::string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        while !self.data.len().is_multiple_of(32) {
            self.data.push(0);
        }
        self.n_tensors += 1;
        self
    }

    pub fn build(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(self.data);
        out
    }
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// English words for 0..=59, tens and units joined by a hyphen ("forty-two").
pub fn minute_word(m: u32) -> String {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 6] = ["", "", "twenty", "thirty", "forty", "fifty"];
    match m {
        0..=19 => ONES[m as usize].to_string(),
        _ if m.is_multiple_of(10) => TENS[(m / 10) as usize].to_string(),
        _ => format!("{}-{}", TENS[(m / 10) as usize], ONES[(m % 10) as usize]),
    }
}

/// The haiku test: the model, through its chat template, must write a haiku about GPU computing
/// that contains the English word for the current minute. Greedy first; if the word is missing,
/// up to 8 seeded samples (temperature 0.7, top-p 0.9). Every attempt is printed.
pub fn haiku_test(engine: &mut dyn qwen_rs::engine::Engine, tok: &qwen_rs::tokenizer::Tokenizer) {
    use qwen_rs::sampling::{Sampler, SamplingParams};
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let word = minute_word(((secs / 60) % 60) as u32);
    let prompt = format!("Write a haiku about GPU computing that includes the word \"{word}\".");
    let text =
        qwen_rs::chat::render(tok.chat_template.as_deref(), &[qwen_rs::chat::Message::new("user", &prompt)]).unwrap();
    let ids = tok.encode(&text).unwrap();
    let mut attempts = vec![SamplingParams { temperature: 0.0, ..Default::default() }];
    for seed in 1..=8 {
        attempts.push(SamplingParams { temperature: 0.7, top_k: 0, top_p: 0.9, seed, ..Default::default() });
    }
    for (i, params) in attempts.into_iter().enumerate() {
        let mut sampler = Sampler::new(params.clone()).unwrap();
        let (out, _) = qwen_rs::generate::generate(engine, tok, &ids, 80, &mut sampler, |_| Ok(())).unwrap();
        let haiku = tok.decode(&out).unwrap();
        let hit = haiku.to_lowercase().contains(&word);
        println!(
            "attempt {i} (temperature {}, seed {}): {}\n{haiku}\n",
            params.temperature,
            params.seed,
            if hit { "contains" } else { "lacks" }
        );
        if hit {
            return;
        }
    }
    panic!("no attempt included \"{word}\"");
}
