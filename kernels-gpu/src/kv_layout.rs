//! The KV-cache layout, shared verbatim by the kernels and the host (`host/src/kv.rs` includes
//! this file), so that nothing else ever computes a cache address.
//!
//! K and V are two arrays of `layers × kv_heads × max_seq × head_dim` elements: for one layer and
//! one KV head the positions are contiguous rows of `head_dim`.

/// Index of element 0 of the `head_dim` row for (`layer`, `kv_head`, `pos`).
#[inline(always)]
pub const fn kv_cache_offset(
    layer: usize,
    kv_head: usize,
    pos: usize,
    kv_heads: usize,
    max_seq: usize,
    head_dim: usize,
) -> usize {
    ((layer * kv_heads + kv_head) * max_seq + pos) * head_dim
}
