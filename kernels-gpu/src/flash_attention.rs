//! Causal grouped-query attention for the rows of a prompt chunk on tensor cores, flash-attention
//! style: `attention_prefill_tc_64` and `attention_prefill_tc_128` (head_dim 64 and 128, every
//! Qwen2.5 size; `attention.rs` has the CUDA-core kernels for other head sizes and for decode).
//!
//! Math (as `attention_f32`): for query token `t` at position `p = pos0 + t` and head `h` (KV head
//! `g = h / (heads / kv_heads)`), `out[t, h] = Σ_{s ≤ p} softmax_s(q[t, h] · K[g, s] / √d) · V[g, s]`.
//! The keys go 32 at a time; each query row keeps a running maximum `m`, normaliser `l` and output
//! `o` (online softmax): for a tile of scores `S`, `m' = max(m, max S)`, `o ← o·2^{m−m'} + P·V`,
//! `l ← l·2^{m−m'} + Σ P` with `P = 2^{S − m'}` (scores carry a factor `log2 e` so that `2^x` is
//! the hardware's `ex2`); at the end `out = o / l`. No score row is stored.
//!
//! Precision: `Q·Kᵀ` and `P·V` run as bf16 `mma` with f32 accumulation, each f32 operand split
//! into two bf16 (`x = hi + lo`, [`split_bf16x2`]) and three products per tile
//! (`hi·hi + hi·lo + lo·hi`; the dropped `lo·lo` is 2⁻¹⁶ of the result), so the scores and outputs
//! keep ~16 bits: relative error ~1e-5 where plain bf16 gives ~1e-2.
//!
//! Work split: a block takes 64 query rows of one head (its 4 warps 16 rows each; the `mma`
//! fragments as in `matmul.rs`); key/value tiles of 32 positions go through two shared-memory
//! stages filled by `cp.async` (f32, split into bf16 halves as fragments are read), the next
//! tile's copy in flight while the current one is multiplied. Tiles past a warp's last row are
//! skipped; the diagonal tile is masked.
//!
//! Layout: `q`, `out` `[tokens, heads·d]` f32; caches as in `kv_layout.rs`; `pos0` in device
//! memory. Launch: grid `(ceil(tokens / 64), heads, 1)` (block `x` takes the query tiles from the
//! last, the longest, down), block `(128, 1, 1)`, dynamic shared memory
//! [`flash_shared_bytes`]`(d)` (above 48 KiB for d = 128: the host raises the kernel's limit).
//! sm_80 or newer. CPU twin: `host::cpu::ops::attention`.

use crate::device::*;
use crate::kv_layout::kv_cache_offset;
use crate::launch_shapes::{FLASH_KEYS, FLASH_ROWS, flash_k_stride, flash_shared_bytes, flash_v_stride};

/// Most `d/16` (k steps of `Q·Kᵀ`) and `d/8` (column tiles of the output) for d ≤ 128.
const MAX_KSTEPS: usize = 8;
const MAX_NTILES: usize = 16;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn flash_attention<const D: usize>(
    out: *mut f32,
    q: *const f32,
    k_cache: *const f32,
    v_cache: *const f32,
    heads: u32,
    kv_heads: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
    tokens: u32,
) {
    let (heads, kv_heads, tokens, max_seq) = (heads as usize, kv_heads as usize, tokens as usize, max_seq as usize);
    let (ks, vs) = (flash_k_stride(D), flash_v_stride(D));
    let stage = flash_shared_bytes(D) / 2;
    let t0 = (grid_dim_x() - 1 - block_x()) as usize * FLASH_ROWS;
    let h = block_y() as usize;
    let kvh = h / (heads / kv_heads);
    let p0 = unsafe { *pos0 } as usize;
    let tid = thread_x() as usize;
    let (lane, warp) = (lane() as usize, warp_id() as usize);
    let (g, t) = (lane / 4, lane % 4);
    let r0 = t0 + warp * 16; // this warp's first query row
    let keys = p0 + tokens.min(t0 + FLASH_ROWS); // positions the block's last row sees
    if keys > max_seq {
        return; // the host checks this; never read past the cache
    }
    let tiles = keys.div_ceil(FLASH_KEYS);
    let warp_keys = p0 + (r0 + 16).min(tokens); // positions this warp's last row sees
    let base = dynamic_shared_addr();
    let head_at = kv_cache_offset(layer as usize, kvh, 0, kv_heads, max_seq, D);
    let (k_head, v_head) = unsafe { (k_cache.add(head_at), v_cache.add(head_at)) };

    // This warp's query fragments, scaled by log2(e)/√d and split: `qh[j]`, `ql[j]` cover
    // columns 16j..16j+16 of rows r0 + g and r0 + g + 8 (zeros past the last token).
    let scale = core::f32::consts::LOG2_E / sqrt(D as f32);
    let mut qh = [[0u32; 4]; MAX_KSTEPS];
    let mut ql = [[0u32; 4]; MAX_KSTEPS];
    for j in 0..D / 16 {
        for i in 0..4 {
            let row = r0 + g + (i & 1) * 8;
            let col = 16 * j + 2 * t + (i >> 1) * 8;
            if row < tokens {
                let at = unsafe { q.add((row * heads + h) * D + col) };
                let (a, b) = unsafe { (*at * scale, *at.add(1) * scale) };
                (qh[j][i], ql[j][i]) = split_bf16x2(a, b);
            }
        }
    }

    // Starts copying key/value tile `j` (positions 32j..32j+32) into stage `s`; positions the
    // block does not see are zero-filled.
    let fill = |j: usize, s: usize| {
        let pieces = FLASH_KEYS * D / 4; // 16-byte pieces of each of K and V
        let mut i = tid;
        while i < pieces {
            let (pos, col) = (i / (D / 4), i % (D / 4) * 4);
            let sp = FLASH_KEYS * j + pos;
            let ok = sp < keys;
            let from = if ok { sp * D + col } else { 0 };
            let bytes = if ok { 16 } else { 0 };
            let k_dst = base + (s * stage + (pos * ks + col) * 4) as u32;
            let v_dst = base + (s * stage + FLASH_KEYS * ks * 4 + (pos * vs + col) * 4) as u32;
            unsafe {
                cp_async_16(k_dst, k_head.add(from) as *const u8, bytes);
                cp_async_16(v_dst, v_head.add(from) as *const u8, bytes);
            }
            i += 128;
        }
    };

    let mut o = [[0.0f32; 4]; MAX_NTILES];
    let (mut m, mut l) = ([f32::NEG_INFINITY; 2], [0.0f32; 2]); // rows g and g + 8

    fill(0, 0);
    cp_async_commit();
    for j in 0..tiles {
        cp_async_wait::<0>();
        sync_threads();
        if j + 1 < tiles {
            fill(j + 1, (j + 1) % 2);
        }
        cp_async_commit();
        let kb = FLASH_KEYS * j;
        if kb >= warp_keys {
            continue; // every key of this tile is after this warp's rows (no barrier below)
        }
        let k_at = |pos: usize, col: usize| base + ((j % 2) * stage + (pos * ks + col) * 4) as u32;
        let v_at = |pos: usize, col: usize| base + ((j % 2) * stage + FLASH_KEYS * ks * 4 + (pos * vs + col) * 4) as u32;

        // S = Q·Kᵀ for the warp's 16 rows × 32 keys (4 tiles of 8 keys).
        let mut sc = [[0.0f32; 4]; 4];
        for (n, s) in sc.iter_mut().enumerate() {
            for jj in 0..D / 16 {
                let (k0, k1) = unsafe {
                    (
                        load_shared_v2_f32(k_at(8 * n + g, 16 * jj + 2 * t)),
                        load_shared_v2_f32(k_at(8 * n + g, 16 * jj + 2 * t + 8)),
                    )
                };
                let ((h0, l0), (h1, l1)) = (split_bf16x2(k0[0], k0[1]), split_bf16x2(k1[0], k1[1]));
                mma_bf16(s, qh[jj], [h0, h1]);
                mma_bf16(s, qh[jj], [l0, l1]);
                mma_bf16(s, ql[jj], [h0, h1]);
            }
        }
        // Causal mask: key kb + 8n + 2t + (i & 1) against row r0 + g + 8·(i ≥ 2).
        if kb + FLASH_KEYS > p0 + r0 + 1 {
            for (n, s) in sc.iter_mut().enumerate() {
                for (i, v) in s.iter_mut().enumerate() {
                    let key = kb + 8 * n + 2 * t + (i & 1);
                    let row = r0 + g + if i >= 2 { 8 } else { 0 };
                    if key > p0 + row {
                        *v = f32::NEG_INFINITY;
                    }
                }
            }
        }
        // Online softmax. Each row's 32 scores sit in the 4 lanes of a quad (8 each).
        let mut mx = [f32::NEG_INFINITY; 2];
        for s in &sc {
            mx[0] = mx[0].max(s[0]).max(s[1]);
            mx[1] = mx[1].max(s[2]).max(s[3]);
        }
        let mut corr = [0.0f32; 2];
        for r in 0..2 {
            mx[r] = mx[r].max(shfl_xor(mx[r], 1));
            mx[r] = mx[r].max(shfl_xor(mx[r], 2));
            let m_new = m[r].max(mx[r]); // finite: key 0 of tile 0 is before every row
            corr[r] = exp2(m[r] - m_new);
            m[r] = m_new;
            l[r] *= corr[r];
        }
        for n in 0..D / 8 {
            o[n][0] *= corr[0];
            o[n][1] *= corr[0];
            o[n][2] *= corr[1];
            o[n][3] *= corr[1];
        }
        for s in sc.iter_mut() {
            for (i, v) in s.iter_mut().enumerate() {
                *v = exp2(*v - m[i / 2]);
                l[i / 2] += *v;
            }
        }
        // P as the A operand of P·V: keys 16c..16c+16 are score tiles 2c and 2c + 1.
        let mut ph = [[0u32; 4]; 2];
        let mut pl = [[0u32; 4]; 2];
        for c in 0..2 {
            let (a, b) = (sc[2 * c], sc[2 * c + 1]);
            (ph[c][0], pl[c][0]) = split_bf16x2(a[0], a[1]);
            (ph[c][1], pl[c][1]) = split_bf16x2(a[2], a[3]);
            (ph[c][2], pl[c][2]) = split_bf16x2(b[0], b[1]);
            (ph[c][3], pl[c][3]) = split_bf16x2(b[2], b[3]);
        }
        // o += P·V: output columns 8n..8n+8, keys in two steps of 16.
        for n in 0..D / 8 {
            for c in 0..2 {
                let col = 8 * n + g;
                let key = 16 * c + 2 * t;
                let (v0, v1, v2, v3) = unsafe {
                    (
                        load_shared_f32(v_at(key, col)),
                        load_shared_f32(v_at(key + 1, col)),
                        load_shared_f32(v_at(key + 8, col)),
                        load_shared_f32(v_at(key + 9, col)),
                    )
                };
                let ((h0, l0), (h1, l1)) = (split_bf16x2(v0, v1), split_bf16x2(v2, v3));
                mma_bf16(&mut o[n], ph[c], [h0, h1]);
                mma_bf16(&mut o[n], ph[c], [l0, l1]);
                mma_bf16(&mut o[n], pl[c], [h0, h1]);
            }
        }
    }

    // Each row's normaliser is split over its quad.
    for v in l.iter_mut() {
        *v += shfl_xor(*v, 1);
        *v += shfl_xor(*v, 2);
    }
    for r in 0..2 {
        let row = r0 + g + 8 * r;
        if row < tokens {
            let orow = unsafe { out.add((row * heads + h) * D) };
            for n in 0..D / 8 {
                unsafe {
                    *orow.add(8 * n + 2 * t) = o[n][2 * r] / l[r];
                    *orow.add(8 * n + 2 * t + 1) = o[n][2 * r + 1] / l[r];
                }
            }
        }
    }
}

/// [`flash_attention`] for head_dim 64 (Qwen2.5 0.5B, 3B). The module doc has the math and launch.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "ptx-kernel" fn attention_prefill_tc_64(
    out: *mut f32,
    q: *const f32,
    k_cache: *const f32,
    v_cache: *const f32,
    heads: u32,
    kv_heads: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
    tokens: u32,
) {
    unsafe { flash_attention::<64>(out, q, k_cache, v_cache, heads, kv_heads, layer, max_seq, pos0, tokens) }
}

/// [`flash_attention`] for head_dim 128 (Qwen2.5 1.5B, 7B and larger). The module doc has the
/// math and launch.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "ptx-kernel" fn attention_prefill_tc_128(
    out: *mut f32,
    q: *const f32,
    k_cache: *const f32,
    v_cache: *const f32,
    heads: u32,
    kv_heads: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
    tokens: u32,
) {
    unsafe { flash_attention::<128>(out, q, k_cache, v_cache, heads, kv_heads, layer, max_seq, pos0, tokens) }
}
