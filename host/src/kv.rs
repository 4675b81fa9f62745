//! The KV-cache layout, in one place. Every engine and kernel indexes the cache through
//! [`KvLayout::offset`]; nothing else computes a cache address.
//!
//! Keys and values are two separate arrays of `layers × kv_heads × max_seq × head_dim` elements:
//! for one layer and one KV head, the `max_seq` positions are contiguous rows of `head_dim`, so a
//! decode step's attention over positions `0..=pos` reads one contiguous block per head.

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
        ((layer * self.kv_heads + kv_head) * self.max_seq + pos) * self.head_dim
    }
}
