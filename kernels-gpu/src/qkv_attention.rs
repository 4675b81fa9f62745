//! q/k/v and attention for one token in one kernel: RMSNorm, the q/k/v product, RoPE, the
//! KV-cache write and attention over the cache. At batch 1 the two kernels this replaces
//! (`decode.rs`'s `qkv_rope_decode`, `attention.rs`'s `attention_decode_*`) each cost a kernel
//! boundary (the grid drains, its writes are flushed, the next one's blocks wait for them) for
//! little work, and the attention of a head ran in one block up to 256 positions (a few at long
//! contexts); here a thread-block cluster per query head hands q, k, v and the softmax partials
//! between its blocks through distributed shared memory. Hopper (sm_90) only: the host uses the
//! two kernels elsewhere.
//!
//! Math, for query head `h` of KV head `g = h / (heads / kv_heads)` at position `p = *pos`, with
//! `x` the residual stream (`[hidden]` f32) and `n = rmsnorm(x) ⊙ γ`:
//! 1. `[q; k; v] = W_qkv[h's q rows, g's k rows, g's v rows] · n + b`, RoPE (NeoX rotate-half,
//!    as `rope.rs`) on `q` and `k`; the cluster of the first query head of KV head `g` writes `k`
//!    and `v` into the caches at `kv_cache_offset(layer, g, p)`;
//! 2. `out[h] = Σ_{s ≤ p} softmax_s(q · K[g, s] / √d) · V[g, s]` (position `p` from the `k` and
//!    `v` just made, the others from the caches).
//!
//! Work split. Grid `(heads · CLUSTER, 1, 1)` of `(32 · WARPS, 1, 1)` blocks in clusters of
//! `CLUSTER` (`launch_shapes.rs`: `QKV_ATTENTION_*`); cluster `h` is query head `h`, block rank
//! `r = blockIdx.x mod CLUSTER`. Dynamic shared memory `qkv_attention_shared_bytes(d, hidden)`.
//! 1. Each block works out `x ⊙ γ` into shared memory and the RMSNorm scale (`γ` loaded before
//!    the wait). The `3d/2` row pairs (q rotation pairs `(j, j + d/2)`, k pairs likewise, v rows
//!    `2i, 2i + 1`) go round the cluster's `CLUSTER · WARPS` warps (warp `w` of block `r` takes
//!    pairs `r·WARPS + w`, then `+ CLUSTER·WARPS`, …), a warp's whole pair in flight (the first
//!    loaded before the wait, as `decode.rs`'s `gate_up_silu_decode_*`); lanes `0 .. CLUSTER`
//!    store the two results into every block's shared memory. A cluster barrier; then the k and v
//!    stores to the caches.
//! 2. Block `r` takes positions `[r·per, (r+1)·per)`, `per = ceil((p + 1) / CLUSTER)`, its warps
//!    as `attention.rs`'s (`warp_pass`, `S` positions a step, the first step loaded before the
//!    wait; position `p` folded in from shared memory by the warp whose turn it is), merged over
//!    the block (`block_merge`); the block's `(m, l, a)` goes into block 0's shared memory. A
//!    cluster barrier; block 0 merges the `CLUSTER` parts in rank order and writes `out[h]`.
//!
//! Layout: `w_qkv` `[(heads + 2·kv_heads)·d, hidden]` (q, k, v rows stacked), `bias` the same
//! stacking of the biases (null for none), `cos`/`sin` `[max_seq, d/2]`, caches as in
//! `kv_layout.rs`, `out` `[heads·d]`. `hidden % 8 == 0`, at most `256·B` (`B` 16-byte chunks a
//! lane holds of a row), `d = 32·L`. May be launched with programmatic dependent launch (it waits
//! before it reads `x`).
//! CPU twin: `host::cpu::ops::{rmsnorm, matmul, rope, attention}`, as the CPU engine runs them.

use crate::attention::{HeadCache, block_merge, empty_step, load_query, load_step, merge_ranges, merged, warp_pass};
use crate::decode::{Team, dot8, load_batch, scaled_x8};
use crate::device::*;
use crate::kv_layout::kv_cache_offset;
use crate::launch_shapes::{QKV_ATTENTION_CLUSTER as CLUSTER, QKV_ATTENTION_WARPS as W};
use crate::launch_shapes::{qkv_attention_parts_at, qkv_attention_qkv_at, qkv_attention_xg_at};

// Every warp has at most two row pairs of step 1 for head_dim up to 128 (checked at compile time).
const _: () = assert!(3 * 128 / 2 <= 2 * CLUSTER * W);

/// The two rows of `w_qkv` of row-pair task `t` of head `h` (KV head `g`), and where their
/// results go in the shared `[q; k; v]` (`3d` f32).
#[inline(always)]
fn task_rows(t: usize, h: usize, g: usize, heads: usize, kv_heads: usize, d: usize) -> ([usize; 2], [usize; 2]) {
    let half = d / 2;
    if t < half {
        ([h * d + t, h * d + t + half], [t, t + half])
    } else if t < d {
        let j = t - half;
        let r = (heads + g) * d + j;
        ([r, r + half], [d + j, d + j + half])
    } else {
        let i = 2 * (t - d);
        let r = (heads + kv_heads + g) * d + i;
        ([r, r + 1], [2 * d + i, 2 * d + i + 1])
    }
}

/// Biases and RoPE factors of task `t` (loaded ahead of its products): `[b1, b2, cos, sin]`.
#[inline(always)]
unsafe fn task_constants(rows: [usize; 2], t: usize, d: usize, p: usize, bias: *const f32, cos: *const f32, sin: *const f32) -> [f32; 4] {
    let (b1, b2) = if bias.is_null() { (0.0, 0.0) } else { unsafe { (*bias.add(rows[0]), *bias.add(rows[1])) } };
    let half = d / 2;
    let (c, s) = if t < d { unsafe { (*cos.add(p * half + t % half), *sin.add(p * half + t % half)) } } else { (1.0, 0.0) };
    [b1, b2, c, s]
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn qkv_attention<const L: usize, const B: usize, const S: usize>(
    out: *mut f32,
    k_cache: *mut f32,
    v_cache: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w_qkv: *const u16,
    bias: *const f32,
    cos: *const f32,
    sin: *const f32,
    hidden: u32,
    heads: u32,
    kv_heads: u32,
    layer: u32,
    max_seq: u32,
    pos: *const u32,
) {
    let d = 32 * L;
    let (hidden, nh, nkv, ms) = (hidden as usize, heads as usize, kv_heads as usize, max_seq as usize);
    let (rank, h) = (block_x() as usize % CLUSTER, block_x() as usize / CLUSTER);
    let g = h / (nh / nkv);
    let (warp, lane, tid) = (warp_id() as usize, lane() as usize, thread_x() as usize);
    let team = Team::warp();
    // The first half of the barrier after which other blocks' shared memory may be written.
    cluster_arrive();
    launch_dependents();
    // The position was copied in before the step or written by an earlier step's kernels.
    let p = unsafe { *pos } as usize;
    if p >= ms {
        cluster_wait();
        return; // the host checks this; never write past the cache
    }

    // Before the wait: this warp's first row pair (whole) and its constants, this thread's first
    // eight entries of γ, and this warp's first step of cached positions.
    let tasks = 3 * d / 2;
    let t0 = rank * W + warp;
    let (rows0, _) = task_rows(t0.min(tasks - 1), h, g, nh, nkv, d);
    let ptrs0 = unsafe { [w_qkv.add(rows0[0] * hidden), w_qkv.add(rows0[1] * hidden)] };
    let mut pair = if t0 < tasks { unsafe { load_batch::<2, B>(team, &ptrs0, 0, hidden) } } else { [[[0; 4]; B]; 2] };
    let mut consts = unsafe { task_constants(rows0, t0.min(tasks - 1), d, p, bias, cos, sin) };
    let gamma0 = if tid * 8 < hidden { unsafe { load_nc_v4(norm.add(tid * 8) as *const u32) } } else { [0; 4] };

    let n = p + 1;
    let per = n.div_ceil(CLUSTER);
    let (start, end) = ((rank * per).min(n), ((rank + 1) * per).min(n));
    let cached_end = end.min(p); // positions before p come from the caches
    let c = HeadCache::new(k_cache, v_cache, layer, g, kv_heads, max_seq, d);
    let first_pos = start + warp;
    let pre = unsafe { load_step::<S, L>(c, empty_step(), first_pos, W, 0, cached_end) };

    wait_for_previous_grid();
    let smem = dynamic_shared::<f32>();
    let base = dynamic_shared_addr();
    let (qkv_at, parts_at, xg_at) = (qkv_attention_qkv_at(d), qkv_attention_parts_at(d), qkv_attention_xg_at(d));

    // x ⊙ γ into shared memory, eight columns a thread at a time, and the RMSNorm scale (the
    // block sum's scratch is the softmax partials' space, unused until step 2).
    let mut ss = 0.0f32;
    let mut col = tid * 8;
    let mut gamma = gamma0;
    while col < hidden {
        let v = unsafe { scaled_x8(x.add(col), &gamma, &mut ss) };
        for (e, &val) in v.iter().enumerate() {
            unsafe { *smem.add(xg_at + col + e) = val };
        }
        col += 8 * block_dim_x() as usize;
        if col < hidden {
            gamma = unsafe { load_nc_v4(norm.add(col) as *const u32) };
        }
    }
    let scale = 1.0 / sqrt(unsafe { block_sum(ss, smem) } / hidden as f32 + eps);
    cluster_wait(); // every block of the cluster has started: its shared memory may be written

    // 1. q, k, v of this position into every block's shared memory; k and v into the caches
    //    after the barrier (so that it need not wait for those stores).
    let mut kv_out = [(0usize, 0.0f32); 2]; // (cache offset, value) of this warp's k/v pairs
    let mut kv_cache_of = [core::ptr::null_mut::<f32>(); 2];
    for k in 0..2 {
        let t = t0 + k * CLUSTER * W;
        if t >= tasks {
            break;
        }
        let (rows, slots) = task_rows(t, h, g, nh, nkv, d);
        if k > 0 {
            let ptrs = unsafe { [w_qkv.add(rows[0] * hidden), w_qkv.add(rows[1] * hidden)] };
            consts = unsafe { task_constants(rows, t, d, p, bias, cos, sin) };
            pair = unsafe { load_batch::<2, B>(team, &ptrs, 0, hidden) };
        }
        let mut acc = [0.0f32; 2];
        for b in 0..B {
            let col = team.col::<B>(0, b);
            if col < hidden {
                let at = base + ((xg_at + col) * 4) as u32;
                let (lo, hi) = unsafe { (load_shared_v4_f32(at), load_shared_v4_f32(at + 16)) };
                let xs = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
                for (r, a) in acc.iter_mut().enumerate() {
                    *a += dot8(&pair[r][b], &xs);
                }
            }
        }
        let [y1, y2] = warp_sum_n(acc);
        let [b1, b2, cs, sn] = consts;
        let (y1, y2) = (y1 * scale + b1, y2 * scale + b2);
        let (v1, v2) = if t < d { (y1 * cs - y2 * sn, y2 * cs + y1 * sn) } else { (y1, y2) };
        if lane < CLUSTER {
            unsafe {
                store_cluster_f32(cluster_shared_addr(base + ((qkv_at + slots[0]) * 4) as u32, lane as u32), v1);
                store_cluster_f32(cluster_shared_addr(base + ((qkv_at + slots[1]) * 4) as u32, lane as u32), v2);
            }
        }
        // The k and v of the first query head of the group go to the caches, after the barrier
        // (lanes 0 and 1 store one value each). A warp has at most two tasks (asserted at the
        // top of this file).
        if t >= d / 2 && h % (nh / nkv) == 0 {
            let o = kv_cache_offset(layer as usize, g, p, nkv, ms, d);
            let (cache, e) = if t < d { (k_cache, slots[0] - d) } else { (v_cache, slots[0] - 2 * d) };
            let e2 = if t < d { e + d / 2 } else { e + 1 };
            kv_out[k] = if lane == 0 { (o + e, v1) } else { (o + e2, v2) };
            kv_cache_of[k] = cache;
        }
    }
    cluster_sync();
    if lane < 2 {
        for (i, &(o, v)) in kv_out.iter().enumerate() {
            if !kv_cache_of[i].is_null() {
                unsafe { *kv_cache_of[i].add(o) = v };
            }
        }
    }

    // 2. Attention over this block's positions; the cluster's parts merged by block 0.
    let qkv = unsafe { smem.add(qkv_at) };
    let qv = unsafe { load_query::<L>(qkv, d) };
    let (mut m, mut l, mut acc) = unsafe { warp_pass::<S, L>(&qv, c, first_pos, cached_end, W, pre, cached_end) };
    if p >= start && p < end && warp == (p - start) % W {
        let (mut dot, mut kp, mut vp) = (0.0f32, [0.0f32; L], [0.0f32; L]);
        for j in 0..L {
            unsafe {
                kp[j] = *qkv.add(d + lane + 32 * j);
                vp[j] = *qkv.add(2 * d + lane + 32 * j);
            }
            dot += qv[j] * kp[j];
        }
        let score = warp_sum(dot) * (1.0 / sqrt(d as f32));
        let m_new = m.max(score);
        let (corr, e) = (exp(m - m_new), exp(score - m_new));
        l = l * corr + e;
        for j in 0..L {
            acc[j] = acc[j] * corr + e * vp[j];
        }
        m = m_new;
    }
    let (big_m, denom, weights) = unsafe { block_merge::<W, L>(m, l, &acc, d) };
    let part = parts_at + rank * (d + 2);
    unsafe {
        if tid < d {
            store_cluster_f32(cluster_shared_addr(base + ((part + 2 + tid) * 4) as u32, 0), merged(&weights, d, tid));
        }
        if tid == 0 {
            store_cluster_f32(cluster_shared_addr(base + (part * 4) as u32, 0), big_m);
            store_cluster_f32(cluster_shared_addr(base + ((part + 1) * 4) as u32, 0), denom);
        }
    }
    cluster_sync(); // after this no block writes another's shared memory: blocks may finish
    if rank == 0 && tid < d {
        let mut all = (f32::NEG_INFINITY, 0.0f32, 0.0f32);
        for q in 0..CLUSTER {
            let at = unsafe { smem.add(parts_at + q * (d + 2)) };
            all = merge_ranges(all, unsafe { (*at, *at.add(1), *at.add(2 + tid)) });
        }
        unsafe { *out.add(h * d + tid) = all.2 / all.1 };
    }
}

/// [`qkv_attention`] for head_dim 64 and rows of up to 1,024 columns (Qwen2.5 0.5B), eight
/// positions a warp step (H100, BENCHMARKS.md step 40: four were 2 % faster at ctx 32 and 1.5 %
/// slower at 2,048, sixteen slower at both; 125 registers).
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn qkv_attention_decode_64(
    out: *mut f32,
    k_cache: *mut f32,
    v_cache: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w_qkv: *const u16,
    bias: *const f32,
    cos: *const f32,
    sin: *const f32,
    hidden: u32,
    heads: u32,
    kv_heads: u32,
    layer: u32,
    max_seq: u32,
    pos: *const u32,
) {
    unsafe {
        qkv_attention::<2, 4, 8>(
            out, k_cache, v_cache, x, norm, eps, w_qkv, bias, cos, sin, hidden, heads, kv_heads, layer, max_seq, pos,
        )
    }
}

/// [`qkv_attention`] for head_dim 128 and rows of up to 2,048 columns (Qwen2.5 1.5B), four
/// positions a warp step (161 registers: eight would not fit 384 threads on an SM).
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn qkv_attention_decode_128(
    out: *mut f32,
    k_cache: *mut f32,
    v_cache: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w_qkv: *const u16,
    bias: *const f32,
    cos: *const f32,
    sin: *const f32,
    hidden: u32,
    heads: u32,
    kv_heads: u32,
    layer: u32,
    max_seq: u32,
    pos: *const u32,
) {
    unsafe {
        qkv_attention::<4, 8, 4>(
            out, k_cache, v_cache, x, norm, eps, w_qkv, bias, cos, sin, hidden, heads, kv_heads, layer, max_seq, pos,
        )
    }
}
