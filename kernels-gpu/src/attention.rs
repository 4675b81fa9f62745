//! Causal grouped-query attention over the KV cache, for one or many query rows (decode and
//! prefill alike).
//!
//! Math: for query token `t` at position `p = pos0 + t` (`pos0` read from device memory) and head `h` (KV head `g = h / (heads /
//! kv_heads)`): `out[t, h] = Σ_{s ≤ p} softmax_s(q[t, h] · K[g, s] / √d) · V[g, s]`.
//! Computed with an online (streaming) softmax, so no score row is stored: each warp keeps a
//! running maximum `m`, normaliser `l` and output accumulator over the positions it visits, and the
//! block merges its warps' partial results at the end (`o = Σ_w e^{m_w − M}·acc_w / Σ_w e^{m_w − M}·l_w`).
//!
//! Layout: `q`, `out` `[tokens, heads·d]` f32; caches as in `kv_layout.rs`; `d ≤ 256` and a
//! multiple of 32 (each lane holds `d/32` elements of the query and of the accumulator).
//! Launch: grid `(heads, tokens, 1)`, block `(512, 1, 1)` (16 warps; warp `w` visits positions
//! `w, w+16, …`), dynamic shared memory `16 · (d + 2) · 4` bytes.
//! CPU twin: `host::cpu::ops::attention`.

use crate::device::*;
use crate::kv_layout::kv_cache_offset;

const WARPS: usize = 16;
const MAX_PER_LANE: usize = 8; // head_dim ≤ 256

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn attention_f32(
    out: *mut f32,
    q: *const f32,
    k_cache: *const f32,
    v_cache: *const f32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
) {
    let h = block_x() as usize;
    let t = block_y() as usize;
    let d = head_dim as usize;
    let per_lane = d / 32;
    let g = h / (heads / kv_heads) as usize;
    let p = unsafe { *pos0 } as usize + t;
    if p >= max_seq as usize {
        return; // the host checks this; never read past the cache
    }
    let (lane, warp) = (lane() as usize, warp_id() as usize);
    let scale = 1.0 / sqrt(d as f32);

    let qrow = unsafe { q.add((t * heads as usize + h) * d) };
    let mut qv = [0.0f32; MAX_PER_LANE];
    let mut acc = [0.0f32; MAX_PER_LANE];
    for j in 0..MAX_PER_LANE {
        if j < per_lane {
            qv[j] = unsafe { *qrow.add(lane + 32 * j) };
        }
    }
    let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
    let mut s = warp;
    while s <= p {
        let off = kv_cache_offset(layer as usize, g, s, kv_heads as usize, max_seq as usize, d);
        let (kr, vr) = unsafe { (k_cache.add(off), v_cache.add(off)) };
        let mut partial = 0.0;
        for j in 0..MAX_PER_LANE {
            if j < per_lane {
                partial += qv[j] * unsafe { *kr.add(lane + 32 * j) };
            }
        }
        let score = warp_sum(partial) * scale;
        let m_new = m.max(score);
        let correction = exp(m - m_new);
        let e = exp(score - m_new);
        l = l * correction + e;
        for j in 0..MAX_PER_LANE {
            if j < per_lane {
                acc[j] = acc[j] * correction + e * unsafe { *vr.add(lane + 32 * j) };
            }
        }
        m = m_new;
        s += WARPS;
    }

    // Merge the warps: shared memory holds, per warp, [m, l, acc[0..d]].
    let smem = dynamic_shared::<f32>();
    let stride = d + 2;
    unsafe {
        let mine = smem.add(warp * stride);
        if lane == 0 {
            *mine = m;
            *mine.add(1) = l;
        }
        for j in 0..MAX_PER_LANE {
            if j < per_lane {
                *mine.add(2 + lane + 32 * j) = acc[j];
            }
        }
    }
    sync_threads();
    let mut big_m = f32::NEG_INFINITY;
    for w in 0..WARPS {
        big_m = big_m.max(unsafe { *smem.add(w * stride) });
    }
    let mut denom = 0.0;
    let mut weights = [0.0f32; WARPS];
    for w in 0..WARPS {
        let mw = unsafe { *smem.add(w * stride) };
        weights[w] = if mw == f32::NEG_INFINITY { 0.0 } else { exp(mw - big_m) };
        denom += weights[w] * unsafe { *smem.add(w * stride + 1) };
    }
    let orow = unsafe { out.add((t * heads as usize + h) * d) };
    let mut i = thread_x() as usize;
    while i < d {
        let mut num = 0.0;
        for w in 0..WARPS {
            num += weights[w] * unsafe { *smem.add(w * stride + 2 + i) };
        }
        unsafe { *orow.add(i) = num / denom };
        i += block_dim_x() as usize;
    }
}
