//! Causal grouped-query attention over the KV cache: `attention_f32` for any number of query rows
//! (prefill), one block per (head, row); `attention_decode_f32` (any head size) and
//! `attention_decode_64` (head_dim 64, wider blocks) for the one row of a decode step, the context
//! split over many blocks.
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
use crate::launch_shapes::{DECODE_ATTENTION_WARPS as DECODE_WARPS, PREFILL_ATTENTION_WARPS as WARPS};
use crate::launch_shapes::{DECODE_ATTENTION_STEP_64 as DECODE_STEP_64, DECODE_ATTENTION_WIDE_WARPS as DECODE_WIDE_WARPS};
const MAX_PER_LANE: usize = 8; // head_dim ≤ 256

/// This lane's `d/32` elements of query row `qrow` (lane `i` holds elements `i, i+32, …`);
/// `L ≥ d/32`.
#[inline(always)]
pub(crate) unsafe fn load_query<const L: usize>(qrow: *const f32, d: usize) -> [f32; L] {
    let mut qv = [0.0f32; L];
    for j in 0..L {
        if j < d / 32 {
            qv[j] = unsafe { *qrow.add(lane() as usize + 32 * j) };
        }
    }
    qv
}

/// Positions a warp takes per step of [`warp_pass`] in `attention_f32` and the general decode
/// kernel: their K and V loads are all issued before the first is used.
const P: usize = 4;

/// One KV head of one layer in the caches (`kv_layout.rs`), `d` elements a row.
#[derive(Clone, Copy)]
pub(crate) struct HeadCache {
    k: *const f32,
    v: *const f32,
    layer: usize,
    g: usize,
    kv_heads: usize,
    max_seq: usize,
    d: usize,
}

impl HeadCache {
    /// KV head `g` of `layer`, from a kernel's arguments.
    pub(crate) fn new(k: *const f32, v: *const f32, layer: u32, g: usize, kv_heads: u32, max_seq: u32, d: usize) -> Self {
        HeadCache { k, v, layer: layer as usize, g, kv_heads: kv_heads as usize, max_seq: max_seq as usize, d }
    }
}

/// This lane's `L` elements of the keys and values of one step's `S` positions.
pub(crate) type Step<const S: usize, const L: usize> = ([[f32; L]; S], [[f32; L]; S]);

#[inline(always)]
pub(crate) fn empty_step<const S: usize, const L: usize>() -> Step<S, L> {
    ([[0.0; L]; S], [[0.0; L]; S])
}

/// Loads into `step` this lane's elements of K and V at positions `s + i·stride` (`i < S`) that
/// lie in `from .. end`; the other slots keep what they held. All loads are issued before any is
/// used.
#[inline(always)]
pub(crate) unsafe fn load_step<const S: usize, const L: usize>(
    c: HeadCache,
    mut step: Step<S, L>,
    s: usize,
    stride: usize,
    from: usize,
    end: usize,
) -> Step<S, L> {
    let lane = lane() as usize;
    for i in 0..S {
        let si = s + i * stride;
        if si >= from && si < end {
            let off = kv_cache_offset(c.layer, c.g, si, c.kv_heads, c.max_seq, c.d);
            for j in 0..L {
                if j < c.d / 32 {
                    unsafe {
                        step.0[i][j] = *c.k.add(off + lane + 32 * j);
                        step.1[i][j] = *c.v.add(off + lane + 32 * j);
                    }
                }
            }
        }
    }
    step
}

/// One warp's online-softmax pass over positions `first, first + stride, … < end` of KV head `g`:
/// returns the running maximum `m` of the scaled scores, `l = Σ e^{score − m}` and this lane's
/// elements of `Σ e^{score − m} · V[s]` (`m = −∞`, `l = 0` when the warp visits no position).
/// Positions go `S` at a time: loads, then `S` interleaved warp reductions, then one update of
/// `m`, `l` and the accumulator. The first step's positions below `loaded_below` are already in
/// `first_step` (the decode kernels load them before they wait for the kernel before).
#[inline(always)]
pub(crate) unsafe fn warp_pass<const S: usize, const L: usize>(
    qv: &[f32; L],
    c: HeadCache,
    first: usize,
    end: usize,
    stride: usize,
    first_step: Step<S, L>,
    loaded_below: usize,
) -> (f32, f32, [f32; L]) {
    let (per_lane, d) = (c.d / 32, c.d);
    let scale = 1.0 / sqrt(d as f32);
    let mut acc = [0.0f32; L];
    let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
    let mut s = first;
    while s < end {
        let (ks, vs) = if s == first {
            unsafe { load_step(c, first_step, s, stride, loaded_below, end) }
        } else {
            unsafe { load_step(c, empty_step(), s, stride, 0, end) }
        };
        let mut dots = [0.0f32; S];
        for i in 0..S {
            for j in 0..L {
                if j < per_lane {
                    dots[i] += qv[j] * ks[i][j];
                }
            }
        }
        let dots = warp_sum_n(dots);
        let mut scores = [f32::NEG_INFINITY; S];
        let mut m_new = m;
        for i in 0..S {
            if s + i * stride < end {
                scores[i] = dots[i] * scale;
                m_new = m_new.max(scores[i]);
            }
        }
        let correction = exp(m - m_new);
        l *= correction;
        for a in acc.iter_mut() {
            *a *= correction;
        }
        for i in 0..S {
            if s + i * stride < end {
                let e = exp(scores[i] - m_new);
                l += e;
                for j in 0..L {
                    if j < per_lane {
                        acc[j] += e * vs[i][j];
                    }
                }
            }
        }
        m = m_new;
        s += S * stride;
    }
    (m, l, acc)
}

/// Merges the `W` warps' passes through dynamic shared memory, which holds per warp
/// `[m, l, acc[0..d]]` afterwards. Returns the block's maximum `M`, its normaliser
/// `Σ_w e^{m_w − M} l_w` and the weights `e^{m_w − M}` (0 for a warp that visited nothing); the
/// block's unnormalised output element `i` is then `Σ_w weight_w · acc_w[i]` ([`merged`]).
/// Contains a barrier: every thread of the block must call it.
#[inline(always)]
pub(crate) unsafe fn block_merge<const W: usize, const L: usize>(m: f32, l: f32, acc: &[f32; L], d: usize) -> (f32, f32, [f32; W]) {
    let smem = dynamic_shared::<f32>();
    let (lane, warp, stride) = (lane() as usize, warp_id() as usize, d + 2);
    unsafe {
        let mine = smem.add(warp * stride);
        if lane == 0 {
            *mine = m;
            *mine.add(1) = l;
        }
        for j in 0..L {
            if j < d / 32 {
                *mine.add(2 + lane + 32 * j) = acc[j];
            }
        }
    }
    sync_threads();
    let mut big_m = f32::NEG_INFINITY;
    for w in 0..W {
        big_m = big_m.max(unsafe { *smem.add(w * stride) });
    }
    let mut denom = 0.0;
    let mut weights = [0.0f32; W];
    for w in 0..W {
        let mw = unsafe { *smem.add(w * stride) };
        weights[w] = if mw == f32::NEG_INFINITY { 0.0 } else { exp(mw - big_m) };
        denom += weights[w] * unsafe { *smem.add(w * stride + 1) };
    }
    (big_m, denom, weights)
}

/// Element `i` of the block's unnormalised output after [`block_merge`].
#[inline(always)]
pub(crate) unsafe fn merged<const W: usize>(weights: &[f32; W], d: usize, i: usize) -> f32 {
    let smem = dynamic_shared::<f32>();
    let mut num = 0.0;
    for w in 0..W {
        num += weights[w] * unsafe { *smem.add(w * (d + 2) + 2 + i) };
    }
    num
}

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
    let g = h / (heads / kv_heads) as usize;
    let p = unsafe { *pos0 } as usize + t;
    if p >= max_seq as usize {
        return; // the host checks this; never read past the cache
    }
    let qv = unsafe { load_query::<MAX_PER_LANE>(q.add((t * heads as usize + h) * d), d) };
    let warp = warp_id() as usize;
    let c = HeadCache::new(k_cache, v_cache, layer, g, kv_heads, max_seq, d);
    let (m, l, acc) = unsafe { warp_pass::<P, MAX_PER_LANE>(&qv, c, warp, p + 1, WARPS, empty_step(), 0) };
    let (_, denom, weights) = unsafe { block_merge::<WARPS, MAX_PER_LANE>(m, l, &acc, d) };
    let orow = unsafe { out.add((t * heads as usize + h) * d) };
    let mut i = thread_x() as usize;
    while i < d {
        unsafe { *orow.add(i) = merged(&weights, d, i) / denom };
        i += block_dim_x() as usize;
    }
}

/// Split-sequence ("flash-decoding") attention for one query token at position `p = *pos0`: the
/// same result as [`attention_f32`] with `tokens = 1`, but a long context is spread over many
/// blocks instead of one per head. Two instances: [`attention_decode_f32`] for any head size, and
/// [`attention_decode_64`] for head_dim 64 (Qwen2.5 0.5B and 3B), whose 16-warp blocks take 256
/// positions in one step of their warps (against 32): up to 256 positions one block per head does
/// the whole head, every key and value but the newest loaded before the wait, without the merge,
/// and at 2,048 nine blocks a head do one step each (H100, 0.5B: 1,526–1,542 tok/s at ctx 32 and
/// 1,278–1,284 at 2,048, against 1,509–1,524 and 1,207–1,214). For head_dim 128 the same blocks
/// (128 positions a step) were slower at 2,048 (1.5B 555–557 against 580–582 tok/s).
///
/// Math: with `W` warps a block and `S` positions a warp step, the `n = p + 1` positions are cut
/// into `active = min(splits, ceil(n / (W·S)))` contiguous ranges of `per = ceil(n / active)`.
/// Block `(h, b)` computes over its range the maximum score `m_b`, `l_b = Σ e^{score − m_b}` and
/// `a_b = Σ e^{score − m_b} V[s]` (warp `w` takes positions `w, w + W, …` of the range, `S` at a
/// time, as `attention_f32`'s warps; the warps merged in shared memory). With one range it writes
/// `a/l`. Otherwise it stores `(m_b, l_b, a_b)` in `partial[h, b]` and counts itself in
/// `counters[h]`; the last block of head `h` to finish merges the ranges,
/// `out = Σ_b e^{m_b − M} a_b / Σ_b e^{m_b − M} l_b` with `M = max_b m_b` (its threads split the
/// ranges between them, see [`merge_ranges`]), and sets `counters[h]` back to 0 for the next launch.
///
/// Layout: `partial` `[heads, splits, d + 2]` f32 scratch; `counters` `[heads]` u32, zero before
/// the first launch; the rest as `attention_f32` with one token. Launch: grid `(heads, splits, 1)`,
/// block `(32·W, 1, 1)`, dynamic shared memory `(W · (d + 2) + 1) · 4` bytes; `W`, `S` per kernel
/// in `launch_shapes.rs` (`DECODE_ATTENTION_*`); `splits` at most two blocks an SM for
/// `attention_decode_f32`, one for `attention_decode_64` (the host's `decode_attention_splits`),
/// so that every range is in one wave. Blocks `b ≥ active` return at once, so one grid
/// (captured in a graph) serves every position. May be launched with programmatic dependent
/// launch: each warp loads its first step of positions before `p` (written by earlier decode
/// steps) before it waits for the kernel before, which writes `q` and position `p`'s key and value.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn attention_decode<const W: usize, const S: usize, const L: usize>(
    out: *mut f32,
    partial: *mut f32,
    counters: *mut u32,
    q: *const f32,
    k_cache: *const f32,
    v_cache: *const f32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
    splits: u32,
) {
    launch_dependents();
    let (h, b) = (block_x() as usize, block_y() as usize);
    let d = head_dim as usize;
    let g = h / (heads / kv_heads) as usize;
    // The position was copied in before the step, not written by a kernel: read before the wait.
    let p = unsafe { *pos0 } as usize;
    if p >= max_seq as usize {
        return; // the host checks this; never read past the cache
    }
    let n = p + 1;
    let active = (splits as usize).min(n.div_ceil(W * S));
    if b >= active {
        // The whole block leaves, before any barrier and without waiting: block 0 always waits,
        // so the grid still ends after the kernel before it (what the next kernel's wait relies on).
        return;
    }
    let per = n.div_ceil(active);
    let (start, end) = (b * per, ((b + 1) * per).min(n));
    let c = HeadCache::new(k_cache, v_cache, layer, g, kv_heads, max_seq, d);
    // Positions before p were written by earlier steps: the warp's first step of them is loaded
    // while the kernel before this one (which writes q and position p) still runs.
    let first = start + warp_id() as usize;
    let pre = unsafe { load_step::<S, L>(c, empty_step(), first, W, 0, end.min(p)) };
    wait_for_previous_grid();

    let qv = unsafe { load_query::<L>(q.add(h * d), d) };
    let (m, l, acc) = unsafe { warp_pass(&qv, c, first, end, W, pre, end.min(p)) };
    let (big_m, denom, weights) = unsafe { block_merge::<W, L>(m, l, &acc, d) };
    let tid = thread_x() as usize;
    let orow = unsafe { out.add(h * d) };
    if active == 1 {
        if tid < d {
            unsafe { *orow.add(tid) = merged(&weights, d, tid) / denom };
        }
        return;
    }

    // Publish this range's (m, l, a), then count it.
    let mine = unsafe { partial.add((h * splits as usize + b) * (d + 2)) };
    unsafe {
        if tid == 0 {
            *mine = big_m;
            *mine.add(1) = denom;
        }
        if tid < d {
            *mine.add(2 + tid) = merged(&weights, d, tid);
        }
    }
    let smem = dynamic_shared::<f32>();
    let flag = unsafe { smem.add(W * (d + 2)) } as *mut u32;
    if !unsafe { last_block_to_arrive(counters.add(h), active as u32, flag) } {
        return;
    }
    // Merge the ranges. The block's threads form `groups = 256 / d` groups of `d`; group `q`
    // merges ranges `q, q + groups, …` (four at a time, their loads issued together) into one
    // (m, l, a), the groups' results meet in shared memory, and the first group merges those.
    let groups = (block_dim_x() as usize / d).max(1);
    let (q, i) = (tid / d, tid % d);
    let ranges = unsafe { partial.add(h * splits as usize * (d + 2)) };
    let mut mine = (f32::NEG_INFINITY, 0.0f32, 0.0f32);
    if q < groups {
        let mut r = q;
        while r < active {
            let (mut ms, mut ls, mut as_) = ([f32::NEG_INFINITY; 4], [0.0f32; 4], [0.0f32; 4]);
            for u in 0..4 {
                let rr = r + u * groups;
                if rr < active {
                    let at = unsafe { ranges.add(rr * (d + 2)) };
                    unsafe {
                        ms[u] = load_relaxed_f32(at);
                        ls[u] = load_relaxed_f32(at.add(1));
                        as_[u] = load_relaxed_f32(at.add(2 + i));
                    }
                }
            }
            for u in 0..4 {
                mine = merge_ranges(mine, (ms[u], ls[u], as_[u]));
            }
            r += 4 * groups;
        }
        let at = unsafe { smem.add(q * (d + 2)) };
        unsafe {
            if i == 0 {
                *at = mine.0;
                *at.add(1) = mine.1;
            }
            *at.add(2 + i) = mine.2;
        }
    }
    sync_threads();
    if tid < d {
        let mut all = (f32::NEG_INFINITY, 0.0f32, 0.0f32);
        for q in 0..groups {
            let at = unsafe { smem.add(q * (d + 2)) };
            all = merge_ranges(all, unsafe { (*at, *at.add(1), *at.add(2 + tid)) });
        }
        unsafe { *orow.add(tid) = all.2 / all.1 };
    }
}

/// [`attention_decode`] for any head size (a multiple of 32 up to 256).
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn attention_decode_f32(
    out: *mut f32,
    partial: *mut f32,
    counters: *mut u32,
    q: *const f32,
    k_cache: *const f32,
    v_cache: *const f32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
    splits: u32,
) {
    unsafe {
        attention_decode::<DECODE_WARPS, P, MAX_PER_LANE>(
            out, partial, counters, q, k_cache, v_cache, heads, kv_heads, head_dim, layer, max_seq, pos0, splits,
        )
    }
}

/// [`attention_decode`] for head_dim 64.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn attention_decode_64(
    out: *mut f32,
    partial: *mut f32,
    counters: *mut u32,
    q: *const f32,
    k_cache: *const f32,
    v_cache: *const f32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    layer: u32,
    max_seq: u32,
    pos0: *const u32,
    splits: u32,
) {
    unsafe {
        attention_decode::<DECODE_WIDE_WARPS, DECODE_STEP_64, 2>(
            out, partial, counters, q, k_cache, v_cache, heads, kv_heads, head_dim, layer, max_seq, pos0, splits,
        )
    }
}

/// Two partial softmax results `(m, l, a)` over disjoint positions merged into one:
/// `M = max(m₁, m₂)`, `l = l₁e^{m₁−M} + l₂e^{m₂−M}`, `a = a₁e^{m₁−M} + a₂e^{m₂−M}`. A part with
/// `m = −∞` (no positions) contributes nothing.
#[inline(always)]
pub(crate) fn merge_ranges(x: (f32, f32, f32), y: (f32, f32, f32)) -> (f32, f32, f32) {
    if y.0 == f32::NEG_INFINITY {
        return x;
    }
    if x.0 == f32::NEG_INFINITY {
        return y;
    }
    let m = x.0.max(y.0);
    let (cx, cy) = (exp(x.0 - m), exp(y.0 - m));
    (m, x.1 * cx + y.1 * cy, x.2 * cx + y.2 * cy)
}
