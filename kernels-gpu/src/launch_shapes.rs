//! Launch shapes that a kernel's code depends on (warps per block, tile sizes, shared memory), in
//! one place for both sides: the kernels use these constants, and `host/src/cuda/kernels.rs`
//! includes this file verbatim (as `host/src/kv.rs` includes `kv_layout.rs`) to size its
//! launches, so a launcher cannot disagree with the kernel it launches.
//! Plain constants and `const fn`s and nothing else: this file must compile for both targets.

/// Warps per block of `attention_f32` (prompt rows); each block merges its warps' partial
/// results through `WARPS · (head_dim + 2)` f32 of shared memory.
pub const PREFILL_ATTENTION_WARPS: usize = 16;

/// Warps per block of `attention_decode_f32` (four positions a warp step); its shared memory is
/// `(DECODE_ATTENTION_WARPS · (head_dim + 2) + 1)` f32.
pub const DECODE_ATTENTION_WARPS: usize = 8;

/// Warps per block of `attention_decode_64`, and the positions each of its warps takes in one
/// step (so a block's first step, loaded before its wait, covers 256 positions). Shared memory as
/// `attention_decode_f32`'s with this many warps.
pub const DECODE_ATTENTION_WIDE_WARPS: usize = 16;
pub const DECODE_ATTENTION_STEP_64: usize = 16;

/// Warps per block of `qkv_rope_decode`, `gate_up_silu_decode` and `lm_head_argmax` (each warp's
/// rows follow from its index in the grid, so any count works). Four, not eight: at 158 registers
/// a thread one 8-warp block of `qkv_rope_decode` fills an SM's register file, and the 7B shape's
/// 288 such blocks took three rounds on 132 SMs; 4-warp blocks fit three an SM, and smaller
/// blocks leave less idle at the end of each kernel (H100, BENCHMARKS.md step 18).
pub const DECODE_WARPS: usize = 4;

/// Blocks in the thread-block cluster of `qkv_attention_decode_{64,128}` (one cluster a query
/// head; 8 is the most every Hopper part must schedule) and warps a block.
pub const QKV_ATTENTION_CLUSTER: usize = 8;
pub const QKV_ATTENTION_WARPS: usize = 12;

/// Dynamic shared memory of `qkv_attention_decode_*` for heads of `head_dim` (`d`), in f32 slots,
/// and where each part starts: the warps' softmax partials (`WARPS · (d + 2)`, at 0, as
/// `attention.rs`'s block merge takes them), q and the new key and value (`3d`), the cluster's
/// blocks' partials (`CLUSTER · (d + 2)`, block 0's only used), then `x ⊙ γ` (`hidden`, 16-byte
/// aligned).
pub const fn qkv_attention_qkv_at(d: usize) -> usize {
    QKV_ATTENTION_WARPS * (d + 2)
}
pub const fn qkv_attention_parts_at(d: usize) -> usize {
    qkv_attention_qkv_at(d) + 3 * d
}
pub const fn qkv_attention_xg_at(d: usize) -> usize {
    (qkv_attention_parts_at(d) + QKV_ATTENTION_CLUSTER * (d + 2)).next_multiple_of(4)
}
pub const fn qkv_attention_shared_bytes(d: usize, hidden: usize) -> usize {
    (qkv_attention_xg_at(d) + hidden) * 4
}
/// 16-byte chunks a lane of `qkv_attention_decode_*` loads of each row of its q/k/v row pair (all
/// before its wait): the kernel for head_dim 64 takes rows of up to `256 · 4` columns (`hidden`),
/// the one for 128 up to `256 · 8`.
pub const fn qkv_attention_chunks(head_dim: usize) -> usize {
    if head_dim == 64 { 4 } else { 8 }
}

/// Rows each warp of `lm_head_argmax` computes.
pub const LM_HEAD_ROWS_PER_WARP: usize = 4;

/// 16-byte chunks a lane of `gate_up_silu_decode_{4,8,16}` loads of each of its two rows (all
/// before its wait): the fewest of 4, 8 and 16 that cover `cols` (32 lanes, 8 columns a chunk),
/// or `None` for rows wider than 4,096 columns (then `gate_up_silu_decode`, in batches).
pub const fn gate_up_chunks(cols: usize) -> Option<usize> {
    if cols <= 8 * 32 * 4 {
        Some(4)
    } else if cols <= 8 * 32 * 8 {
        Some(8)
    } else if cols <= 8 * 32 * 16 {
        Some(16)
    } else {
        None
    }
}
/// 16-byte chunks a thread of `residual_matvec_decode_{3,5,10}` loads of its block's row (all
/// before its wait), for rows of `cols` columns shared by `threads` threads: the fewest of 3, 5
/// and 10 that cover the row, or `None` (then `residual_matvec_decode`, in batches).
pub const fn residual_chunks(cols: usize, threads: usize) -> Option<usize> {
    let need = cols.div_ceil(8 * threads);
    if need <= 3 {
        Some(3)
    } else if need <= 5 {
        Some(5)
    } else if need <= 10 {
        Some(10)
    } else {
        None
    }
}
/// Dynamic shared memory of `gate_up_silu_decode_{4,8,16}` for rows of `cols` columns: `x ⊙ g`
/// (`cols` f32), then 32 f32 of scratch for the block's sum.
pub const fn gate_up_shared_bytes(cols: usize) -> usize {
    (cols + 32) * 4
}

/// Work items of one token in `rope_kv_write` (`head_dim` a multiple of 8): four rotation pairs of
/// a q or k head each, then four values of a v head each. The host gives a block one thread an
/// item.
pub const fn rope_work_items(heads: usize, kv_heads: usize, head_dim: usize) -> usize {
    (heads + kv_heads) * (head_dim / 8) + kv_heads * (head_dim / 4)
}

/// `matmul_tc`'s epilogues (its `epilogue` argument): store the product, add it to `out`, or
/// store `silu(gate) · up` of row pairs.
pub const EPILOGUE_STORE: u32 = 0;
pub const EPILOGUE_ACCUMULATE: u32 = 1;
pub const EPILOGUE_SWIGLU: u32 = 2;

/// Tokens and weight rows of one `matmul_tc` block tile (the block is 128 threads, 4 warps of
/// 32 × 32), and the columns of one K step.
pub const TC_TILE: usize = 64;
pub const TC_K: usize = 32;
/// K steps of `matmul_tc` in flight at once: shared-memory stages filled by `cp.async`.
pub const TC_STAGES: usize = 3;
/// Row strides of `matmul_tc`'s shared-memory tiles, in elements: the x tile is f32, the w tile
/// bf16, each padded by 8 so that rows stay 16-byte aligned and the fragment reads fall on
/// different banks (x: `(40·g + 2t) mod 32` distinct for each half-warp's 64-bit reads; w:
/// `(20·g + t) mod 32` distinct for the 8 × 4 lanes).
pub const TC_X_STRIDE: usize = TC_K + 8;
pub const TC_W_STRIDE: usize = TC_K + 8;
/// Bytes of one stage: the x tile `[TC_TILE][TC_X_STRIDE]` f32, then the w tile
/// `[TC_TILE][TC_W_STRIDE]` bf16.
pub const TC_STAGE_BYTES: usize = TC_TILE * TC_X_STRIDE * 4 + TC_TILE * TC_W_STRIDE * 2;
/// Dynamic shared memory of `matmul_tc` (46,080 bytes, under the 48 KiB default limit).
pub const TC_SHARED_BYTES: usize = TC_STAGES * TC_STAGE_BYTES;
/// Output elements of one `matmul_tc` tile: what a split of the K range leaves in the scratch.
pub const TC_TILE_ELEMS: usize = TC_TILE * TC_TILE;

/// Tokens and weight rows of one `matmul_wgmma` block tile (the block is two warpgroups, 256
/// threads; warp `w` computes tokens `16w .. 16w + 16` of the tile for all 128 rows, so the two
/// warpgroups share each weight tile), the columns of one K step, and the shared-memory stages
/// `cp.async` fills ahead of the products. `matmul_wgmma_64` is the same kernel with 64-token
/// tiles (one warpgroup, 128 threads; three blocks fit an SM instead of two) for the grids that
/// 128-token tiles leave with a nearly empty last wave.
pub const WG_TOKENS: usize = 128;
pub const WG_SMALL_TOKENS: usize = 64;
pub const WG_ROWS: usize = 128;
pub const WG_K: usize = 64;
pub const WG_STAGES: usize = 2;
/// Threads of a `matmul_wgmma*` block with `tokens`-token tiles: a warp every 16 tokens.
pub const fn wg_threads(tokens: usize) -> usize {
    tokens * 2
}
/// Row stride (f32) of `matmul_wgmma`'s activation tile: padded by 8 as `TC_X_STRIDE`, so that the
/// fragment reads fall on different banks (`(72·g + 2t) mod 32` distinct in each half-warp).
pub const WG_X_STRIDE: usize = WG_K + 8;
/// Bytes of one `matmul_wgmma*` stage with `tokens`-token tiles: the activation tile
/// `[tokens][WG_X_STRIDE]` f32, then the weight tile in `wgmma`'s 128-byte-swizzle K-major layout:
/// row `r`'s 64 bf16 of K in the 128 bytes at `128·r`, its 16-byte chunk `c` at chunk `c ^ (r mod 8)`
/// (the tile 1,024-byte aligned: `tokens · 288` bytes of activations come first, a multiple of
/// 1,024 for 64 and 128 tokens), so that every row is one global 128-byte line copied to one
/// shared 128-byte line.
pub const fn wg_x_bytes(tokens: usize) -> usize {
    tokens * WG_X_STRIDE * 4
}
pub const WG_W_BYTES: usize = WG_ROWS * WG_K * 2;
pub const fn wg_stage_bytes(tokens: usize) -> usize {
    wg_x_bytes(tokens) + WG_W_BYTES
}
/// Dynamic shared memory of `matmul_wgmma` (106,496 bytes) and `matmul_wgmma_64` (69,632): above
/// the 48 KiB default, so the host raises the kernels' limits; two blocks of the first, three of
/// the second fit an H100 SM, as do their registers.
pub const fn wg_shared_bytes(tokens: usize) -> usize {
    WG_STAGES * wg_stage_bytes(tokens)
}
pub const WG_SHARED_BYTES: usize = wg_shared_bytes(WG_TOKENS);

/// Query rows of one `attention_prefill_tc_*` block (4 warps of 16) and keys of one K/V tile.
pub const FLASH_ROWS: usize = 64;
pub const FLASH_KEYS: usize = 32;
/// Row stride (bf16 values) of the K and V tiles in shared memory: padded by 8 so that the eight
/// 16-byte rows one `ldmatrix` phase reads (`head_dim + 8` values apart: 4 banks on) fall on
/// different banks; rows stay 16-byte aligned.
pub const fn flash_row_stride(head_dim: usize) -> usize {
    head_dim + 8
}
/// Bytes of one bf16 plane of a K or V tile (`FLASH_KEYS` rows) in shared memory.
pub const fn flash_plane_bytes(head_dim: usize) -> usize {
    FLASH_KEYS * flash_row_stride(head_dim) * 2
}
/// Bytes of one bf16 plane of the block's query rows (`FLASH_ROWS` rows) in shared memory.
pub const fn flash_q_plane_bytes(head_dim: usize) -> usize {
    FLASH_ROWS * flash_row_stride(head_dim) * 2
}
/// Dynamic shared memory of `attention_prefill_tc_*`: the block's query rows and two buffers of a
/// K and a V tile, each split into a bf16 `hi` and `lo` plane: 55,296 bytes for head_dim 64,
/// 104,448 for 128 (above the 48 KiB default: the host raises the kernel's limit).
pub const fn flash_shared_bytes(head_dim: usize) -> usize {
    2 * flash_q_plane_bytes(head_dim) + 2 * 4 * flash_plane_bytes(head_dim)
}
