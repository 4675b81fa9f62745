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
        while self.data.len() % 32 != 0 {
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
        while out.len() % 32 != 0 {
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
