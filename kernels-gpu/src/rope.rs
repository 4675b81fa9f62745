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
//! `[tokens, heads·d]` f32; caches as in `kv_layout.rs`. `d` a multiple of 8.
//! Launch: grid `(tokens, 1, 1)`, block `(B, 1, 1)`: a block takes a token, its threads the
//! token's work items in turn, each four rotations of one head (16-byte loads and stores of
//! elements `i..i+4` and `i+d/2..i+d/2+4`) or four values of one value head. The host gives a
//! block as many threads as a token has items (`launch_shapes::rope_work_items`, rounded
//! up to 32, at most 1,024), so that each thread waits for its loads once. Launched with
//! programmatic dependent launch where the device has it: it waits for the product before it
//! (`griddepcontrol.wait`) before reading `qkv`.
//! CPU twin: `host::cpu::ops::rope` and the cache copy in `CpuEngine::forward_tokens`.

use crate::device::*;
use crate::kv_layout::kv_cache_offset;
use crate::launch_shapes::rope_work_items;

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
    wait_for_previous_grid();
    let t = block_x() as usize;
    let (heads, kv_heads, d) = (heads as usize, kv_heads as usize, head_dim as usize);
    let (half, max_seq) = (d / 2, max_seq as usize);
    let pos = unsafe { *pos0 } as usize + t;
    if pos >= max_seq {
        return; // the host checks this; never index past the tables and the cache
    }
    let (cos, sin) = unsafe { (cos.add(pos * half), sin.add(pos * half)) };
    let row = unsafe { qkv.add(t * (heads + 2 * kv_heads) * d) };
    // Work items: (heads + kv_heads)·d/8 rotations of four pairs, then kv_heads·d/4 value copies.
    let rotations = (heads + kv_heads) * (half / 4);
    let items = rope_work_items(heads, kv_heads, d);
    let mut w = thread_x() as usize;
    while w < items {
        if w < rotations {
            let (hh, i) = (w / (half / 4), w % (half / 4) * 4);
            let dst = if hh < heads {
                unsafe { q.add((t * heads + hh) * d) }
            } else {
                unsafe { k_cache.add(kv_cache_offset(layer as usize, hh - heads, pos, kv_heads, max_seq, d)) }
            };
            unsafe {
                let x = row.add(hh * d + i);
                let (a, b) = (load_v4_f32(x), load_v4_f32(x.add(half)));
                let (c, s) = (load_v4_f32(cos.add(i)), load_v4_f32(sin.add(i)));
                let (mut lo, mut hi) = ([0.0f32; 4], [0.0f32; 4]);
                for e in 0..4 {
                    lo[e] = a[e] * c[e] - b[e] * s[e];
                    hi[e] = b[e] * c[e] + a[e] * s[e];
                }
                store_v4_f32(dst.add(i), lo);
                store_v4_f32(dst.add(i + half), hi);
            }
        } else {
            let (g, i) = ((w - rotations) / (d / 4), (w - rotations) % (d / 4) * 4);
            let dst = kv_cache_offset(layer as usize, g, pos, kv_heads, max_seq, d);
            unsafe { store_v4_f32(v_cache.add(dst + i), load_v4_f32(row.add((heads + kv_heads + g) * d + i))) };
        }
        w += block_dim_x() as usize;
    }
}
