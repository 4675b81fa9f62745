//! The GGUF reader on arbitrary bytes: header, metadata of every value type, tensor infos,
//! offsets and alignment; then the config read from whatever parsed.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qwen_rs::config::Config;
use qwen_rs::gguf::Gguf;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Gguf::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) {
        for t in &g.tensors {
            let _ = g.tensor_bytes(t).len();
        }
        let _ = Config::from_gguf(&g);
    }
});
