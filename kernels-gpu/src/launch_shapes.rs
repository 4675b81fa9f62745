//! Launch shapes that a kernel's code depends on (warps per block, tile sizes, shared memory), in
//! one place for both sides: the kernels use these constants, and `host/src/cuda/kernels.rs`
//! includes this file verbatim (as `host/src/kv.rs` includes `kv_layout.rs`) to size its
//! launches, so a launcher cannot disagree with the kernel it launches.
//! Plain `usize` constants and nothing else: this file must compile for both targets.

/// Warps per block of `attention_f32` (prompt rows); each block merges its warps' partial
/// results through `WARPS · (head_dim + 2)` f32 of shared memory.
pub const PREFILL_ATTENTION_WARPS: usize = 16;

/// Warps per block of `attention_decode_f32`; its shared memory is
/// `(DECODE_ATTENTION_WARPS · (head_dim + 2) + 1)` f32.
pub const DECODE_ATTENTION_WARPS: usize = 8;

/// Rows each warp of `lm_head_argmax` computes.
pub const LM_HEAD_ROWS_PER_WARP: usize = 4;

/// Tokens and weight rows of one `matmul_tc` block tile (the block is 128 threads, 4 warps of
/// 32 × 32), and the columns of one K step.
pub const TC_TILE: usize = 64;
pub const TC_K: usize = 32;
/// Row stride of `matmul_tc`'s shared-memory tiles, in bf16: 8 of padding (a row is 20 words)
/// make the fragment reads fall on 32 different banks (`(20·g + t) mod 32` for the 8 × 4 lanes).
pub const TC_STRIDE: usize = TC_K + 8;
/// Dynamic shared memory of `matmul_tc`: the x tile's high and low bf16 halves and the w tile,
/// each `[TC_TILE][TC_STRIDE]` bf16.
pub const TC_SHARED_BYTES: usize = 3 * TC_TILE * TC_STRIDE * 2;
