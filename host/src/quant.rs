//! ggml tensor types and their dequantisation to f32 (the formats as ggml defines them).
//!
//! Block formats (little-endian; `d`/`dmin` are IEEE f16):
//! - `Q8_0`, 32 values in 34 bytes: `d`, `qs: [i8; 32]`; `x = d·q`.
//! - `Q5_0`, 32 values in 22 bytes: `d`, `qh: u32` (the 5th bits), `qs: [u8; 16]` (low nibbles of
//!   values 0..16, high nibbles of 16..32); `x = d·(q − 16)`.
//! - `Q4_K`, 256 values in 144 bytes: `d`, `dmin`, `scales: [u8; 12]` (eight 6-bit scales and
//!   eight 6-bit mins), `qs: [u8; 128]`; sub-block `j` of 32: `x = d·sc_j·q − dmin·m_j`.
//! - `Q6_K`, 256 values in 210 bytes: `ql: [u8; 128]` (low 4 bits), `qh: [u8; 64]` (high 2 bits),
//!   `scales: [i8; 16]`, `d`; `x = d·sc·(q − 32)` with one scale per 16 values.
//!
//! The arithmetic order matches ggml's reference (`d·sc` first, then `·q`), so results agree with
//! the `gguf` Python package bit for bit.

use half::{bf16, f16};

/// The ggml tensor types qwen-rs can load, plus the ones it recognises in order to refuse them by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q5_0,
    Q4K,
    Q6K,
}

/// Names of the ggml types qwen-rs recognises but does not (yet) dequantise.
const UNSUPPORTED: &[(u32, &str)] = &[
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q5_1"),
    (9, "Q8_1"),
    (10, "Q2_K"),
    (11, "Q3_K"),
    (13, "Q5_K"),
    (15, "Q8_K"),
    (16, "IQ2_XXS"),
    (17, "IQ2_XS"),
    (18, "IQ3_XXS"),
    (19, "IQ1_S"),
    (20, "IQ4_NL"),
    (21, "IQ3_S"),
    (22, "IQ2_S"),
    (23, "IQ4_XS"),
    (24, "I8"),
    (25, "I16"),
    (26, "I32"),
    (27, "I64"),
    (28, "F64"),
    (29, "IQ1_M"),
];

const SUPPORTED: &str = "F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K";

impl GgmlType {
    pub fn from_id(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            8 => GgmlType::Q8_0,
            6 => GgmlType::Q5_0,
            12 => GgmlType::Q4K,
            14 => GgmlType::Q6K,
            _ => {
                return Err(match UNSUPPORTED.iter().find(|(i, _)| *i == id) {
                    Some((_, name)) => format!(
                        "quant type {name} is not supported (supported: {SUPPORTED}); re-quantise the model, e.g. to Q4_K_M or Q8_0"
                    ),
                    None => format!("unknown quant type id {id} (supported: {SUPPORTED})"),
                });
            }
        })
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q8_0 | GgmlType::Q5_0 => 32,
            GgmlType::Q4K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q8_0 => 34,
            GgmlType::Q5_0 => 22,
            GgmlType::Q4K => 144,
            GgmlType::Q6K => 210,
        }
    }
}

/// Dequantises `src` (whole blocks of `ty`) into `dst`, which must hold exactly
/// `src.len() / block_bytes * block_len` values.
///
/// # Panics
/// If the lengths disagree: callers size both from one validated tensor info.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    let (bb, bl) = (ty.block_bytes(), ty.block_len());
    assert!(
        src.len().is_multiple_of(bb) && src.len() / bb * bl == dst.len(),
        "dequantize: {} bytes of {ty:?} for {} values",
        src.len(),
        dst.len()
    );
    let blocks = src.chunks_exact(bb).zip(dst.chunks_exact_mut(bl));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = f16::from_le_bytes([b[0], b[1]]).to_f32()),
        GgmlType::BF16 => blocks.for_each(|(b, y)| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| dequant_q8_0(b, y)),
        GgmlType::Q5_0 => blocks.for_each(|(b, y)| dequant_q5_0(b, y)),
        GgmlType::Q4K => blocks.for_each(|(b, y)| dequant_q4_k(b, y)),
        GgmlType::Q6K => blocks.for_each(|(b, y)| dequant_q6_k(b, y)),
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = d * (q as i8) as f32;
    }
}

fn dequant_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let hi0 = ((qh >> j) << 4) & 0x10;
        let hi1 = (qh >> (j + 12)) & 0x10;
        let x0 = ((qs[j] as u32 & 0x0f) | hi0) as i32 - 16;
        let x1 = ((qs[j] as u32 >> 4) | hi1) as i32 - 16;
        y[j] = d * x0 as f32;
        y[j + 16] = d * x1 as f32;
    }
}

/// The `j`-th (0..8) 6-bit scale and min of a K-quant `scales` array.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

fn dequant_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let out = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0f) as f32 - min1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - min2;
        }
    }
}

fn dequant_q6_k(b: &[u8], y: &mut [f32]) {
    let (ql_all, rest) = b.split_at(128);
    let (qh_all, rest) = rest.split_at(64);
    let (sc_all, d) = rest.split_at(16);
    let d = f16_at(d, 0);
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let sc = &sc_all[half * 8..half * 8 + 8];
        let out = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}
