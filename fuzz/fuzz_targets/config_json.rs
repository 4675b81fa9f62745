//! `config.json` parsing and validation on arbitrary text.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qwen_rs::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_hf_json(Path::new("config.json"), text);
    }
});
