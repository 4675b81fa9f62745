//! The GGUF → tokenizer builder on arbitrary files, then encode/decode of a fixed string.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qwen_rs::gguf::Gguf;
use qwen_rs::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Gguf::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) {
        if let Ok(t) = Tokenizer::from_gguf(&g) {
            if let Ok(ids) = t.encode("Hello <|im_start|> 世界 🦀") {
                let _ = t.decode(&ids);
            }
        }
    }
});
