//! Every dequantiser on arbitrary block bytes (the first byte picks the type).
#![no_main]
use libfuzzer_sys::fuzz_target;
use qwen_rs::quant::{GgmlType, dequantize};

const TYPES: [GgmlType; 7] =
    [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let ty = TYPES[pick as usize % TYPES.len()];
    let blocks = rest.len() / ty.block_bytes();
    let bytes = &rest[..blocks * ty.block_bytes()];
    let mut out = vec![0f32; blocks * ty.block_len()];
    dequantize(ty, bytes, &mut out);
    // Every output is a finite function of its block, except f32/f16/bf16 which pass NaN/inf through.
    if matches!(ty, GgmlType::Q8_0 | GgmlType::Q5_0) {
        for (b, o) in bytes.chunks_exact(ty.block_bytes()).zip(out.chunks_exact(ty.block_len())) {
            let d = f32::from(half::f16::from_le_bytes([b[0], b[1]]));
            if d.is_finite() {
                assert!(o.iter().all(|v| v.is_finite()), "{ty:?} block with finite scale gave a non-finite value");
            }
        }
    }
});
