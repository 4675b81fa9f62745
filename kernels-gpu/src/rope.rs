//! Rotary position embedding (NeoX "rotate half") fused with the KV-cache write.
//!
//! Math, for token `t` at position `p = pos0 + t` and each head vector `x` of `head_dim = d`
//! (`pos0` is read from device memory, so a captured CUDA graph can replay the step at any position):
//! for `i < d/2`, `(x_i, x_{i+d/2}) ← (x_i·cos θ − x_{i+d/2}·sin θ, x_{i+d/2}·cos θ + x_i·sin θ)`
//! with `θ = p · theta^(−2i/d)`; `cos`/`sin` come precomputed from the host as `[max_seq, d/2]`
//! tables (the same f32 values the CPU engine uses). Query heads are rotated into `q`; key heads
//! are rotated and written to the K cache, value heads copied to the V cache, both at
//! `kv_cache_offset(layer, g, p)`.
//!
//! Layout: `qkv` `[tokens, (heads + 2·kv_heads)·d]` f32, each row the token's queries, keys and
//! values side by side (what one product with the stacked q/k/v weight gives); `q`
//! `[tokens, heads·d]` f32; caches as in `kv_layout.rs`.
//! Launch: grid `(tokens, heads + kv_heads, 1)`, block `(64, 1, 1)` (threads stride over `d/2`).
//! CPU twin: `host::cpu::ops::rope` and the cache copy in `CpuEngine::forward_tokens`.

use crate::device::*;
use crate::kv_layout::kv_cache_offset;

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn rope_kv_write(
    q: *mut f32,
    qkv: *const f32,
    k_cache: *mut f32,
    v_cache: *mut f32,
    cos: *const f32,
    sin: *const f32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
) {
    let t = block_x() as usize;
    let hh = block_y();
    let d = head_dim as usize;
    let half = d / 2;
    let pos = unsafe { *pos0 } as usize + t;
    if pos >= max_seq as usize {
        return; // the host checks this; never index past the tables and the cache
    }
    let (cos, sin) = unsafe { (cos.add(pos * half), sin.add(pos * half)) };
    let (heads, kv_heads) = (heads as usize, kv_heads as usize);
    let row = unsafe { qkv.add(t * (heads + 2 * kv_heads) * d) };
    let mut i = thread_x() as usize;
    if (hh as usize) < heads {
        let x = unsafe { row.add(hh as usize * d) };
        let y = unsafe { q.add((t * heads + hh as usize) * d) };
        while i < half {
            unsafe {
                let (a, b) = (*x.add(i), *x.add(i + half));
                let (c, s) = (*cos.add(i), *sin.add(i));
                *y.add(i) = a * c - b * s;
                *y.add(i + half) = b * c + a * s;
            }
            i += block_dim_x() as usize;
        }
    } else {
        let g = hh as usize - heads;
        let (k, v) = unsafe { (row.add((heads + g) * d), row.add((heads + kv_heads + g) * d)) };
        let dst = kv_cache_offset(layer as usize, g, pos, kv_heads, max_seq as usize, d);
        while i < half {
            unsafe {
                let (a, b) = (*k.add(i), *k.add(i + half));
                let (c, s) = (*cos.add(i), *sin.add(i));
                *k_cache.add(dst + i) = a * c - b * s;
                *k_cache.add(dst + i + half) = b * c + a * s;
                *v_cache.add(dst + i) = *v.add(i);
                *v_cache.add(dst + i + half) = *v.add(i + half);
            }
            i += block_dim_x() as usize;
        }
    }
}
