//! The KV-cache layout. The address arithmetic is one function, `kv_cache_offset`, in
//! `kernels-gpu/src/kv_layout.rs`, which this module includes verbatim: the kernels and the host
//! index the cache through the same code, and nothing else computes a cache address.
//!
//! Keys and values are two separate arrays of `layers × kv_heads × max_seq × head_dim` elements:
//! for one layer and one KV head, the `max_seq` positions are contiguous rows of `head_dim`, so a
//! decode step's attention over positions `0..=pos` reads one contiguous block per head.

#[path = "../../kernels-gpu/src/kv_layout.rs"]
mod shared;
pub use shared::kv_cache_offset;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub layers: usize,
    pub kv_heads: usize,
    pub max_seq: usize,
    pub head_dim: usize,
}

impl KvLayout {
    /// Elements in one of the two arrays (K or V).
    pub fn len(&self) -> usize {
        self.layers * self.kv_heads * self.max_seq * self.head_dim
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of element 0 of the `head_dim` row for (`layer`, `kv_head`, `pos`).
    #[inline]
    pub fn offset(&self, layer: usize, kv_head: usize, pos: usize) -> usize {
        debug_assert!(layer < self.layers && kv_head < self.kv_heads && pos < self.max_seq);
        kv_cache_offset(layer, kv_head, pos, self.kv_heads, self.max_seq, self.head_dim)
    }
}
