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
//! fragments as in `matmul.rs`) and one of `S` parts of their keys (flash-decoding style): the
//! block's `n` key tiles in parts of `ceil(n / S)` tiles, part `z` from tile `z·ceil(n / S)` (a
//! part past the last tile has nothing to do). Where the keys take more than one part, each part
//! leaves its `o`, `m` and `l` in `work` and the last part to finish merges them in part order
//! (`m = max m_z`, `o = Σ_z o_z·2^{m_z − m}`, `l` likewise), so the result does not depend on
//! which part finishes last. (Otherwise the 64 rows of a head at 2,048 positions are 64 tiles in
//! a row for one block, with the GPU half empty.)
//!
//! Every operand is split into bf16 halves once, not by every warp that reads it: each warp
//! stores its query rows split into shared memory at the start; each key/value tile of 32
//! positions is loaded by all threads (f32, 16-byte loads into registers) while the warps
//! multiply the tile before it, then stored split into the other of two shared-memory buffers of
//! `hi` and `lo` planes. The warps read their `mma` fragments from the
//! planes with `ldmatrix` (V transposed). One barrier a tile. Tiles past a warp's last row are
//! skipped; the diagonal tile is masked.
//!
//! Layout: `q`, `out` `[tokens, heads·d]` f32; caches as in `kv_layout.rs`; `pos0` in device
//! memory. `work` and `counters`: as `matmul_tc`'s split-K (`matmul.rs`): room for `S · heads ·
//! ceil(tokens / 64)` slots of `128 · (d/2 + 4)` floats, one counter per (query tile, head), zero
//! between launches. Launch: grid `(heads · S, ceil(tokens / 64), 1)` (block `x` = part · heads +
//! head; block `y` takes the query tiles from the last, the longest, down, so the longest go to
//! the GPU first), block `(128, 1, 1)`, dynamic shared memory
//! [`flash_shared_bytes`](crate::launch_shapes::flash_shared_bytes)`(d)` (above 48 KiB: the host
//! raises the kernel's limit).
//! sm_80 or newer. CPU twin: `host::cpu::ops::attention`.

use crate::device::*;
use crate::kv_layout::kv_cache_offset;
use crate::launch_shapes::{FLASH_KEYS, FLASH_ROWS, flash_plane_bytes, flash_q_plane_bytes, flash_row_stride};

/// Where each row's running maximum starts (scaled scores are far above it).
const M_FLOOR: f32 = -1.0e30;

/// Most `d/8` (column tiles of the output) for d ≤ 128.
const MAX_NTILES: usize = 16;
/// Threads of a block, and the most 16-byte pieces of a K or a V tile one thread loads (d ≤ 128).
const THREADS: usize = 128;
const MAX_PIECES: usize = FLASH_KEYS * 128 / 4 / THREADS;

/// This thread's pieces of a K or V tile: the 16-byte pieces `tid + 128i` of the tile's
/// `FLASH_KEYS × D` values, at rows `tid / (D/4) + i·512/D` and columns `4·(tid mod D/4)`.
/// Returns the first row and the column.
#[inline(always)]
fn tile_piece<const D: usize>(tid: usize) -> (usize, usize) {
    (tid / (D / 4), tid % (D / 4) * 4)
}

/// This thread's pieces of tile `j` (positions `32j..32j + 32`) of one head's K or V cache rows
/// into registers; positions from `keys` on (not seen by the block, maybe never written) as zeros.
#[inline(always)]
unsafe fn load_tile<const D: usize>(r: &mut [[f32; 4]; MAX_PIECES], head: *const f32, j: usize, keys: usize, tid: usize) {
    let (row, col) = tile_piece::<D>(tid);
    let at = unsafe { head.add((FLASH_KEYS * j + row) * D + col) };
    for i in 0..FLASH_KEYS * D / 4 / THREADS {
        let rows = i * 4 * THREADS / D;
        r[i] = if FLASH_KEYS * j + row + rows < keys { unsafe { load_v4_f32(at.add(rows * D)) } } else { [0.0; 4] };
    }
}

/// Stores the pieces [`load_tile`] loaded, split into bf16 halves, into the shared-memory planes
/// `hi` and `hi + plane` (`FLASH_KEYS` rows, [`flash_row_stride`] apart).
#[inline(always)]
unsafe fn store_tile<const D: usize>(r: &[[f32; 4]; MAX_PIECES], hi: u32, tid: usize) {
    let (stride, plane) = (flash_row_stride(D), flash_plane_bytes(D) as u32);
    let (row, col) = tile_piece::<D>(tid);
    let at = hi + ((row * stride + col) * 2) as u32;
    for i in 0..FLASH_KEYS * D / 4 / THREADS {
        let rows = i * 4 * THREADS / D;
        let v = r[i];
        let ((h0, l0), (h1, l1)) = (split_bf16x2(v[0], v[1]), split_bf16x2(v[2], v[3]));
        let at = at + (rows * stride * 2) as u32;
        unsafe {
            store_shared_v2_u32(at, [h0, h1]);
            store_shared_v2_u32(at + plane, [l0, l1]);
        }
    }
}

/// The key tiles `first..end` of part `part` of `parts` for a block whose rows see `keys`
/// positions, and how many parts have tiles (`used`): parts of `ceil(tiles / parts)` tiles.
#[inline(always)]
fn key_part(keys: usize, part: usize, parts: usize) -> (usize, usize, usize) {
    let tiles = keys.div_ceil(FLASH_KEYS);
    let per = tiles.div_ceil(parts);
    (part * per, tiles.min(part * per + per), tiles.div_ceil(per))
}

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
    work: *mut f32,
    counters: *mut u32,
) {
    let (heads, kv_heads, tokens, max_seq) = (heads as usize, kv_heads as usize, tokens as usize, max_seq as usize);
    let (stride, plane) = (flash_row_stride(D), flash_plane_bytes(D));
    let t0 = (grid_dim_y() - 1 - block_y()) as usize * FLASH_ROWS;
    let (h, part, parts) = (block_x() as usize % heads, block_x() as usize / heads, grid_dim_x() as usize / heads);
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
    let (first, end, used) = key_part(keys, part, parts);
    if first >= end {
        return;
    }
    let warp_keys = p0 + (r0 + 16).min(tokens); // positions this warp's last row sees
    let base = dynamic_shared_addr();
    let head_at = kv_cache_offset(layer as usize, kvh, 0, kv_heads, max_seq, D);
    let (k_head, v_head) = unsafe { (k_cache.add(head_at), v_cache.add(head_at)) };

    // This warp's 16 query rows, scaled by log2(e)/√d and split, into the Q planes (rows
    // 16·warp..16·warp + 16; zeros past the last token) in the layout of `mma` A fragments: lane
    // (g, t) stores columns 16j + 2t (+ 8) of rows g and g + 8. Only this warp reads them back.
    let scale = core::f32::consts::LOG2_E / sqrt(D as f32);
    let q_plane = flash_q_plane_bytes(D) as u32;
    let kv_base = base + 2 * q_plane;
    for j in 0..D / 16 {
        for i in 0..4 {
            let (row, col) = (g + (i & 1) * 8, 16 * j + 2 * t + (i >> 1) * 8);
            let (mut a, mut b) = (0.0, 0.0);
            if r0 + row < tokens {
                let at = unsafe { q.add(((r0 + row) * heads + h) * D + col) };
                (a, b) = unsafe { (*at * scale, *at.add(1) * scale) };
            }
            let (hi, lo) = split_bf16x2(a, b);
            let at = base + (((16 * warp + row) * stride + col) * 2) as u32;
            unsafe {
                store_shared_u32(at, hi);
                store_shared_u32(at + q_plane, lo);
            }
        }
    }
    // Each lane's row address for `ldmatrix`: K rows 8n + (lane mod 8), columns 8·(lane / 8) of a
    // 32-column step (four matrices: two k steps of two halves); V rows (keys) lane mod 16,
    // columns 8·(lane / 16) of a 16-column step (transposed: two keys halves of two column tiles).
    // Q (A fragments) as V: rows lane mod 16, columns 8·(lane / 16) of a 16-column step.
    let k_lane = (((lane % 8) * stride + 8 * (lane / 8)) * 2) as u32;
    let v_lane = (((lane % 16) * stride + 8 * (lane / 16)) * 2) as u32;
    let q_hi = base + ((16 * warp * stride * 2) as u32) + v_lane;

    let mut o = [[0.0f32; 4]; MAX_NTILES];
    // Rows g and g + 8. `m` starts at a finite floor, not -inf: in a part past the first a row may
    // see no key in a tile (all masked), and its exponents must then give 0 (2^(-inf - floor)),
    // not NaN (2^(-inf + inf)). The first tile a row sees takes `m` above the floor, and
    // `2^(floor - m)` = 0 clears the (empty) sums, as -inf would.
    let (mut m, mut l) = ([M_FLOOR; 2], [0.0f32; 2]);

    // Buffer b's planes: K hi, K lo, V hi, V lo. The next tile's K and V are loaded a step
    // ahead; for d = 128 (which has no registers to spare for both) V only after this step's Q·Kᵀ.
    let whole = D <= 64;
    let k_plane = |b: usize| kv_base + (4 * b * plane) as u32;
    let v_plane = |b: usize| kv_base + ((4 * b + 2) * plane) as u32;
    let (mut nk, mut nv) = ([[0.0f32; 4]; MAX_PIECES], [[0.0f32; 4]; MAX_PIECES]);
    unsafe {
        load_tile::<D>(&mut nk, k_head, first, keys, tid);
        load_tile::<D>(&mut nv, v_head, first, keys, tid);
        store_tile::<D>(&nk, k_plane(first % 2), tid);
        store_tile::<D>(&nv, v_plane(first % 2), tid);
        if first + 1 < end {
            load_tile::<D>(&mut nk, k_head, first + 1, keys, tid);
            if whole {
                load_tile::<D>(&mut nv, v_head, first + 1, keys, tid);
            }
        }
    }
    sync_threads();
    for j in first..end {
        let kb = FLASH_KEYS * j;
        // Every key of this tile is after this warp's rows: only the split of the next one.
        let active = kb < warp_keys;
        let (b, nb) = (j % 2, (j + 1) % 2);
        let (k_hi, k_lo) = (k_plane(b) + k_lane, k_plane(b) + plane as u32 + k_lane);
        let (v_hi, v_lo) = (v_plane(b) + v_lane, v_plane(b) + plane as u32 + v_lane);

        // S = Q·Kᵀ for the warp's 16 rows × 32 keys (4 tiles of 8 keys), 32 columns of Q at a time.
        let mut sc = [[0.0f32; 4]; 4];
        if active {
            for jp in 0..D / 32 {
                let mut qh = [[0u32; 4]; 2];
                let mut ql = [[0u32; 4]; 2];
                for half in 0..2 {
                    let at = q_hi + (32 * jp + 16 * half) as u32 * 2;
                    unsafe { (qh[half], ql[half]) = (ldmatrix_x4(at), ldmatrix_x4(at + q_plane)) };
                }
                for (n, s) in sc.iter_mut().enumerate() {
                    let at = ((8 * n * stride + 32 * jp) * 2) as u32;
                    let (h, lo) = unsafe { (ldmatrix_x4(k_hi + at), ldmatrix_x4(k_lo + at)) };
                    for half in 0..2 {
                        let x = 2 * half;
                        mma_bf16(s, qh[half], [h[x], h[x + 1]]);
                        mma_bf16(s, qh[half], [lo[x], lo[x + 1]]);
                        mma_bf16(s, ql[half], [h[x], h[x + 1]]);
                    }
                }
            }
        }
        // The other buffer was last read in step j − 1, before the barrier that ended it.
        if !whole && j + 1 < end {
            unsafe {
                store_tile::<D>(&nk, k_plane(nb), tid);
                load_tile::<D>(&mut nv, v_head, j + 1, keys, tid);
            }
        }
        if active {
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
                let m_new = m[r].max(mx[r]); // finite: `m` starts finite
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
            // o += P·V: output columns 8n..8n+8 two tiles at a time, keys in two steps of 16.
            for np in 0..D / 16 {
                for c in 0..2 {
                    let at = ((16 * c * stride + 16 * np) * 2) as u32;
                    let (h, lo) = unsafe { (ldmatrix_x4_trans(v_hi + at), ldmatrix_x4_trans(v_lo + at)) };
                    for half in 0..2 {
                        let (x, n) = (2 * half, 2 * np + half);
                        mma_bf16(&mut o[n], ph[c], [h[x], h[x + 1]]);
                        mma_bf16(&mut o[n], ph[c], [lo[x], lo[x + 1]]);
                        mma_bf16(&mut o[n], pl[c], [h[x], h[x + 1]]);
                    }
                }
            }
        }
        // Tile j + 1 split into the other buffer, tile j + 2 into registers; the barrier makes
        // the split tile visible (and ends every warp's reads of this one).
        if j + 1 < end {
            unsafe {
                if whole {
                    store_tile::<D>(&nk, k_plane(nb), tid);
                }
                store_tile::<D>(&nv, v_plane(nb), tid);
                if j + 2 < end {
                    load_tile::<D>(&mut nk, k_head, j + 2, keys, tid);
                    if whole {
                        load_tile::<D>(&mut nv, v_head, j + 2, keys, tid);
                    }
                }
            }
        }
        sync_threads();
    }

    // Keys in several parts: every part leaves its `o`, `m` and `l` (thread `tid`'s value `i` at
    // `i·128 + tid` of its slot); the last part to arrive merges them, in part order.
    if used > 1 {
        let n = D / 2 + 4;
        let query_tile = block_y() as usize * heads + h;
        let slot = |z: usize| unsafe { work.add((z * heads * grid_dim_y() as usize + query_tile) * n * THREADS + tid) };
        let mine = slot(part);
        for i in 0..D / 2 {
            unsafe { *mine.add(i * THREADS) = o[i / 4][i % 4] };
        }
        for r in 0..2 {
            unsafe {
                *mine.add((D / 2 + r) * THREADS) = m[r];
                *mine.add((D / 2 + 2 + r) * THREADS) = l[r];
            }
        }
        if !unsafe { last_block_to_arrive(counters.add(query_tile), used as u32, dynamic_shared::<u32>()) } {
            return;
        }
        // Part 0 holds key 0, which every row sees: the merged maximum is above the floor, and a
        // part where a row saw no key (`m` at the floor) adds 0 to it.
        let mut mm = [M_FLOOR; 2];
        for z in 0..used {
            for (r, v) in mm.iter_mut().enumerate() {
                *v = v.max(unsafe { load_relaxed_f32(slot(z).add((D / 2 + r) * THREADS)) });
            }
        }
        o = [[0.0f32; 4]; MAX_NTILES];
        l = [0.0f32; 2];
        for z in 0..used {
            let at = slot(z);
            let mut c = [0.0f32; 2];
            for r in 0..2 {
                c[r] = exp2(unsafe { load_relaxed_f32(at.add((D / 2 + r) * THREADS)) } - mm[r]);
                l[r] += c[r] * unsafe { load_relaxed_f32(at.add((D / 2 + 2 + r) * THREADS)) };
            }
            for i in 0..D / 2 {
                o[i / 4][i % 4] += c[(i % 4) / 2] * unsafe { load_relaxed_f32(at.add(i * THREADS)) };
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
    work: *mut f32,
    counters: *mut u32,
) {
    unsafe { flash_attention::<64>(out, q, k_cache, v_cache, heads, kv_heads, layer, max_seq, pos0, tokens, work, counters) }
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
    work: *mut f32,
    counters: *mut u32,
) {
    unsafe { flash_attention::<128>(out, q, k_cache, v_cache, heads, kv_heads, layer, max_seq, pos0, tokens, work, counters) }
}
