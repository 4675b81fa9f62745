//! A safetensors file (header and data) on arbitrary bytes, through qwen-rs's conversion to f32.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qwen_rs::checkpoint::safetensor_to_f32;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = safetensors::SafeTensors::deserialize(data) {
        for (name, view) in st.tensors() {
            let _ = safetensor_to_f32(Path::new("fuzz.safetensors"), &name, &view);
        }
    }
});
