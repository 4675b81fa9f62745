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
