//! One-token (decode) products: RMSNorm folded into a matrix-vector product, with the step that
//! follows the product done in the same kernel's epilogue, and the plain residual products. At
//! batch 1 every kernel boundary costs a drain and a refill of the GPU, so one decoder layer is
//! four of these launches and the attention, instead of twelve kernels (on Hopper three, with
//! `qkv_attention.rs` doing q/k/v and the attention in one).
//!
//! Every kernel here starts the same way: `launch_dependents` (the next kernel may be scheduled)
//! and a load of the first batch of the weight rows it will read, then `wait_for_previous_grid`
//! before touching any activation. Launched with programmatic dependent launch
//! (`host/src/cuda/launch.rs`), a kernel's first weights are thus in flight while the kernel
//! before it finishes; launched normally, the two calls cost nothing. Weights are read with
//! [`load_stream_v4`] (not kept in L1, which then holds the activations every warp re-reads); an
//! L2 prefetch of each team's whole rows, done here until BENCHMARKS.md's step 20, only added L2
//! requests (H100: 7B 167 → 177 tok/s without it).
//!
//! Shared math. With `x` the residual stream (`[cols]` f32), `g` an RMSNorm weight (`[cols]`
//! bf16) and `W` a bf16 weight `[rows, cols]`:
//! `y[r] = s · Σ_c x[c]·g[c]·W[r, c] + b[r]`, `s = 1 / sqrt(Σ_c x[c]² / cols + eps)`,
//! which is `W · rmsnorm(x) + b`. The sum of squares is accumulated in the same pass over the
//! columns as the dot products, so the norm costs no extra pass and no barrier.
//!
//! A team of threads (a warp, or for the residual products a whole block) computes one, two or
//! four rows: its threads stride over 16-byte chunks (eight weights, `ld.global.nc.v4`) taken in
//! batches of four per row, all of a batch's loads issued together and the next batch's issued
//! before the current one is used; then a warp or block reduction. `cols % 8 == 0`
//! and every pointer 16-byte aligned (the CUDA engine refuses other shapes).
//! The block, grid and shared memory are given with each kernel.
//! CPU twins: `host::cpu::ops::{rmsnorm, matmul}` followed by the epilogue's twin.

use crate::device::*;
use crate::kv_layout::kv_cache_offset;
use crate::launch_shapes::LM_HEAD_ROWS_PER_WARP;

/// Eight f32 of `x` times eight bf16 of `g` (packed in `gv`), starting at `x`; adds `Σ x²` to `ss`.
#[inline(always)]
pub(crate) unsafe fn scaled_x8(x: *const f32, gv: &[u32; 4], ss: &mut f32) -> [f32; 8] {
    let xs = unsafe { x8(x) };
    let mut out = [0.0f32; 8];
    for k in 0..4 {
        let (lo, hi) = bf16x2_to_f32(gv[k]);
        *ss += xs[2 * k] * xs[2 * k] + xs[2 * k + 1] * xs[2 * k + 1];
        out[2 * k] = xs[2 * k] * lo;
        out[2 * k + 1] = xs[2 * k + 1] * hi;
    }
    out
}

#[inline(always)]
pub(crate) fn dot8(wv: &[u32; 4], xs: &[f32; 8]) -> f32 {
    let mut acc = 0.0;
    for k in 0..4 {
        let (lo, hi) = bf16x2_to_f32(wv[k]);
        acc += lo * xs[2 * k] + hi * xs[2 * k + 1];
    }
    acc
}

/// Eight f32 of `x` starting at `x` (16-byte aligned).
#[inline(always)]
unsafe fn x8(x: *const f32) -> [f32; 8] {
    let (a, b) = unsafe { (load_v4_f32(x), load_v4_f32(x.add(4))) };
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

/// Weights of one batch: for each of `R` rows, `B` 16-byte chunks of this thread.
pub(crate) type Batch<const R: usize, const B: usize> = [[[u32; 4]; B]; R];

/// Which threads share a row, and which of them this one is: a warp (`T = 32`, index the lane)
/// or a whole block (`T = blockDim.x`, index the thread). Chunk slots of a row go round them:
/// thread `me` takes columns `me·8, me·8 + 8T, …`, and batch `j` is its slots `jB .. jB + B`.
#[derive(Clone, Copy)]
pub(crate) struct Team {
    size: usize,
    me: usize,
}

impl Team {
    pub(crate) fn warp() -> Self {
        Team { size: 32, me: lane() as usize }
    }
    fn block() -> Self {
        Team { size: block_dim_x() as usize, me: thread_x() as usize }
    }
    /// Column of this thread's chunk `b` of batch `j`.
    #[inline(always)]
    pub(crate) fn col<const B: usize>(self, j: usize, b: usize) -> usize {
        ((j * B + b) * self.size + self.me) * 8
    }
}

/// Loads batch `j` of each row (zeros for slots past `cols`). All `R·B` loads are issued before
/// any is used.
#[inline(always)]
pub(crate) unsafe fn load_batch<const R: usize, const B: usize>(team: Team, rows: &[*const u16; R], j: usize, cols: usize) -> Batch<R, B> {
    let mut w = [[[0u32; 4]; B]; R];
    for b in 0..B {
        let c = team.col::<B>(j, b);
        if c < cols {
            for r in 0..R {
                w[r][b] = unsafe { load_stream_v4(rows[r].add(c) as *const u32) };
            }
        }
    }
    w
}

/// This thread's share of `W[rows[i]] · (x ⊙ g)` (with `NORM`) or `W[rows[i]] · x` (without; `g`
/// unused) for `R` rows at once, and of `Σ x²` (with `NORM`): summed over the team, they give the
/// products (see [`warp_finish`]). `first` is batch 0 of the rows, loaded by the caller (before
/// `wait_for_previous_grid`: weights never change). Batch `j + 1` is loaded before batch `j` is
/// used, so a thread always has one batch in flight while it computes another.
#[inline(always)]
pub(crate) unsafe fn partial_dots<const R: usize, const B: usize, const NORM: bool>(
    team: Team,
    rows: [*const u16; R],
    first: Batch<R, B>,
    x: *const f32,
    g: *const u16,
    cols: usize,
) -> ([f32; R], f32) {
    let mut acc = [0.0f32; R];
    let mut ss = 0.0f32;
    let batches = cols.div_ceil(8 * team.size * B);
    let mut cur = first;
    for j in 0..batches {
        let next =
            if j + 1 < batches { unsafe { load_batch::<R, B>(team, &rows, j + 1, cols) } } else { [[[0; 4]; B]; R] };
        let xs = unsafe { batch_inputs::<B, NORM>(team, x, g, j, cols, &mut ss) };
        add_dots(&mut acc, &cur, &xs);
        cur = next;
    }
    (acc, ss)
}

/// This thread's inputs for batch `j`: for each of its `B` chunk slots, the eight columns of
/// `x ⊙ g` (with `NORM`, adding their `Σ x²` to `ss`) or of `x` (zeros for slots past `cols`).
#[inline(always)]
unsafe fn batch_inputs<const B: usize, const NORM: bool>(
    team: Team,
    x: *const f32,
    g: *const u16,
    j: usize,
    cols: usize,
    ss: &mut f32,
) -> [[f32; 8]; B] {
    let mut xs = [[0.0f32; 8]; B];
    for b in 0..B {
        let c = team.col::<B>(j, b);
        if c < cols {
            xs[b] = if NORM {
                unsafe { scaled_x8(x.add(c), &load_nc_v4(g.add(c) as *const u32), ss) }
            } else {
                unsafe { x8(x.add(c)) }
            };
        }
    }
    xs
}

/// `acc[r] += Σ_b w[r][b] · xs[b]`: a batch's weights of `R` rows against its inputs.
#[inline(always)]
fn add_dots<const R: usize, const B: usize>(acc: &mut [f32; R], w: &Batch<R, B>, xs: &[[f32; 8]; B]) {
    for b in 0..B {
        for r in 0..R {
            acc[r] += dot8(&w[r][b], &xs[b]);
        }
    }
}

/// The RMSNorm scale `1 / sqrt(Σ x² / cols + eps)` from each lane's share `ss` of `Σ x²`.
#[inline(always)]
fn rms_scale(ss: f32, cols: usize, eps: f32) -> f32 {
    1.0 / sqrt(warp_sum(ss) / cols as f32 + eps)
}

/// Sums a warp team's [`partial_dots`] over the warp (every lane gets the results) and applies
/// the RMSNorm scale `1 / sqrt(Σ x² / cols + eps)` with `NORM`.
#[inline(always)]
pub(crate) fn warp_finish<const R: usize, const NORM: bool>((acc, ss): ([f32; R], f32), cols: usize, eps: f32) -> [f32; R] {
    let scale = if NORM { rms_scale(ss, cols, eps) } else { 1.0 };
    let sums = warp_sum_n(acc);
    let mut out = [0.0f32; R];
    for r in 0..R {
        out[r] = sums[r] * scale;
    }
    out
}

/// The start of every kernel here: let the next kernel be scheduled and load the first batch of
/// the team's weight rows, returned. The caller then loads any other constant it needs (biases,
/// RoPE tables) and calls `wait_for_previous_grid` before it touches an activation.
#[inline(always)]
unsafe fn prologue<const R: usize, const B: usize>(team: Team, rows: [*const u16; R], cols: usize) -> Batch<R, B> {
    launch_dependents();
    unsafe { load_batch::<R, B>(team, &rows, 0, cols) }
}

/// The global warp index of this thread.
#[inline(always)]
fn global_warp() -> usize {
    (block_x() * (block_dim_x() / WARP) + warp_id()) as usize
}

/// Attention input projection for one token: `[q; k; v] = W_qkv · rmsnorm(x) + b_qkv`, then RoPE
/// on `q` and `k` (NeoX rotate-half, as `rope.rs`), `q` written to `q_out`, `k` and `v` written
/// into the caches at `kv_cache_offset(layer, g, p)` with `p = *pos` (device memory, so a captured
/// graph replays at any position).
///
/// Layout: `w` is `[(heads + 2·kv_heads)·d, cols]` (the q, k and v weights stacked, in that
/// order), `bias` the same stacking of the three biases (null for none); `q_out` `[heads·d]`;
/// `cos`/`sin` `[max_seq, d/2]`.
/// Block `(32·DECODE_WARPS, 1, 1)`; grid `(ceil(pairs / DECODE_WARPS), 1, 1)`,
/// `pairs = (heads + 2·kv_heads)·d/2` (any block size works): warp `i < (heads + kv_heads)·d/2`
/// computes the rotation pair `(j, j + d/2)` of q/k head `i / (d/2)`, `j = i mod d/2`; the
/// remaining warps compute two adjacent rows of v each.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn qkv_rope_decode(
    q_out: *mut f32,
    k_cache: *mut f32,
    v_cache: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w: *const u16,
    bias: *const f32,
    cos: *const f32,
    sin: *const f32,
    cols: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    layer: u32,
    max_seq: u32,
    pos: *const u32,
) {
    let (cols, heads, kv_heads, d) = (cols as usize, heads as usize, kv_heads as usize, head_dim as usize);
    let half = d / 2;
    let i = global_warp();
    let rotated = (heads + kv_heads) * half;
    if i >= rotated + kv_heads * half {
        launch_dependents();
        return; // whole warps leave together
    }
    // The two rows this warp computes.
    let (r1, r2) = if i < rotated {
        let r = (i / half) * d + i % half;
        (r, r + half)
    } else {
        let r = (heads + kv_heads) * d + 2 * (i - rotated);
        (r, r + 1)
    };
    let rows = unsafe { [w.add(r1 * cols), w.add(r2 * cols)] };
    let team = Team::warp();
    let first = unsafe { prologue::<2, 4>(team, rows, cols) };
    // The position (copied in before the step), biases and RoPE table entries: none is written by
    // a kernel, so they are loaded before the wait too.
    let p = unsafe { *pos } as usize;
    if p >= max_seq as usize {
        return; // the host checks this; never write past the cache
    }
    let (hh, j) = (r1 / d, r1 % d);
    let (b1, b2) = if bias.is_null() { (0.0, 0.0) } else { unsafe { (*bias.add(r1), *bias.add(r2)) } };
    let (c, s) = if i < rotated { unsafe { (*cos.add(p * half + j), *sin.add(p * half + j)) } } else { (1.0, 0.0) };
    wait_for_previous_grid();
    let [y1, y2] =
        warp_finish::<2, true>(unsafe { partial_dots::<2, 4, true>(team, rows, first, x, norm, cols) }, cols, eps);
    if lane() != 0 {
        return;
    }
    let (y1, y2) = (y1 + b1, y2 + b2);
    let at = |g: usize| kv_cache_offset(layer as usize, g, p, kv_heads, max_seq as usize, d);
    unsafe {
        if i < rotated {
            let (a, b) = (y1 * c - y2 * s, y2 * c + y1 * s);
            if hh < heads {
                *q_out.add(r1) = a;
                *q_out.add(r2) = b;
            } else {
                let o = at(hh - heads);
                *k_cache.add(o + j) = a;
                *k_cache.add(o + j + half) = b;
            }
        } else {
            let o = at(hh - heads - kv_heads);
            *v_cache.add(o + j) = y1;
            *v_cache.add(o + j + 1) = y2;
        }
    }
}

/// MLP input for one token: `out[r] = silu(gate[r]) · up[r]` with `gate[r] = W_gu[2r] · rmsnorm(x)`,
/// `up[r] = W_gu[2r + 1] · rmsnorm(x)`, `silu(z) = z / (1 + e^{−z})`.
/// Layout: `w` is `[2·inter, cols]`, the gate and up weights' rows interleaved (gate row `r` at
/// `2r`, up row `r` at `2r + 1`, as `matmul_tc`'s SwiGLU epilogue takes them); `out` `[inter]`.
/// Block `(32·DECODE_WARPS, 1, 1)`; grid `(ceil(inter / DECODE_WARPS), 1, 1)`: warp `r` computes
/// rows `2r` and `2r + 1`.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn gate_up_silu_decode(
    out: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w: *const u16,
    inter: u32,
    cols: u32,
) {
    let (r, inter, cols) = (global_warp(), inter as usize, cols as usize);
    if r >= inter {
        launch_dependents();
        return;
    }
    let rows = unsafe { [w.add(2 * r * cols), w.add((2 * r + 1) * cols)] };
    let team = Team::warp();
    let first = unsafe { prologue::<2, 4>(team, rows, cols) };
    wait_for_previous_grid();
    let [gate, up] =
        warp_finish::<2, true>(unsafe { partial_dots::<2, 4, true>(team, rows, first, x, norm, cols) }, cols, eps);
    if lane() == 0 {
        unsafe { *out.add(r) = gate / (1.0 + exp(-gate)) * up };
    }
}

/// [`gate_up_silu_decode`] for rows of at most `256·B` columns (`B` = 4, 8 or 16: the 0.5B
/// model's 896, the 1.5B's 1,536, the 7B's 3,584): same math and layout, but warp `r` loads all
/// `B` of each lane's 16-byte chunks of its rows `2r` and `2r + 1` before the wait (no batches:
/// the whole pair in flight at once), and the block works out `rmsnorm`'s `x ⊙ g` and the scale
/// once, into shared memory, instead of each warp keeping its share in registers. The weights a
/// kernel has in flight are then as many as its warps can hold, which is what bounds this
/// product (H100, BENCHMARKS.md step 39: 0.5B 1,550–1,562 → 1,594–1,603 tok/s at ctx 32, 1.5B
/// 642–643 → 665–670; four pairs a warp in flight were slower, 1,514–1,525).
/// Block `(32·DECODE_WARPS, 1, 1)`; grid `(ceil(inter / DECODE_WARPS), 1, 1)`; dynamic shared
/// memory `gate_up_shared_bytes(cols)` (`launch_shapes.rs`: `x ⊙ g`, then the block sum's
/// scratch). CPU twin: as `gate_up_silu_decode`'s.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gate_up_silu_decode_inflight<const B: usize>(
    out: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w: *const u16,
    inter: usize,
    cols: usize,
) {
    let r = global_warp();
    let team = Team::warp();
    // Rows past `inter` (the last block's spare warps) load nothing, but stay for the barriers.
    let last = r.min(inter.saturating_sub(1));
    let rows = unsafe { [w.add(2 * last * cols), w.add((2 * last + 1) * cols)] };
    launch_dependents();
    let pair = if r < inter { unsafe { load_batch::<2, B>(team, &rows, 0, cols) } } else { [[[0; 4]; B]; 2] };
    wait_for_previous_grid();
    // x ⊙ g into shared memory, eight columns a thread at a time, and Σ x² over the block.
    let xg = dynamic_shared::<f32>();
    let mut ss = 0.0f32;
    let mut c = thread_x() as usize * 8;
    while c < cols {
        let v = unsafe { scaled_x8(x.add(c), &load_nc_v4(norm.add(c) as *const u32), &mut ss) };
        for (e, &val) in v.iter().enumerate() {
            unsafe { *xg.add(c + e) = val };
        }
        c += 8 * block_dim_x() as usize;
    }
    // Its barriers also make every thread's x ⊙ g visible to the block.
    let scale = 1.0 / sqrt(unsafe { block_sum(ss, xg.add(cols)) } / cols as f32 + eps);
    if r >= inter {
        return;
    }
    let base = dynamic_shared_addr();
    let mut acc = [0.0f32; 2];
    for b in 0..B {
        let c = team.col::<B>(0, b);
        if c < cols {
            let (lo, hi) = unsafe { (load_shared_v4_f32(base + (c * 4) as u32), load_shared_v4_f32(base + (c * 4 + 16) as u32)) };
            let xs = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
            for (k, a) in acc.iter_mut().enumerate() {
                *a += dot8(&pair[k][b], &xs);
            }
        }
    }
    let [gate, up] = warp_sum_n(acc);
    let (gate, up) = (gate * scale, up * scale);
    if lane() == 0 {
        unsafe { *out.add(r) = gate / (1.0 + exp(-gate)) * up };
    }
}

/// [`gate_up_silu_decode_inflight`] for rows of up to 1,024 columns.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn gate_up_silu_decode_4(
    out: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w: *const u16,
    inter: u32,
    cols: u32,
) {
    unsafe { gate_up_silu_decode_inflight::<4>(out, x, norm, eps, w, inter as usize, cols as usize) }
}

/// [`gate_up_silu_decode_inflight`] for rows of up to 2,048 columns.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn gate_up_silu_decode_8(
    out: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w: *const u16,
    inter: u32,
    cols: u32,
) {
    unsafe { gate_up_silu_decode_inflight::<8>(out, x, norm, eps, w, inter as usize, cols as usize) }
}

/// [`gate_up_silu_decode_inflight`] for rows of up to 4,096 columns.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn gate_up_silu_decode_16(
    out: *mut f32,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w: *const u16,
    inter: u32,
    cols: u32,
) {
    unsafe { gate_up_silu_decode_inflight::<16>(out, x, norm, eps, w, inter as usize, cols as usize) }
}

/// LM head and greedy choice for one token: `logits = W · rmsnorm(x)` and the index of the
/// largest logit, the smallest index on ties, NaNs never winning.
///
/// The choice is kept in `best` as one `u64` that `atom.max` can update: the logit's bits mapped
/// to an unsigned key in the order of the floats, in the upper half, and `u32::MAX − index` in
/// the lower half. `best` must be 0 before the launch; after it, `index = u32::MAX − (best as u32)`
/// (0 left in `best` decodes to `u32::MAX`: every logit was NaN). A warp updates `best` only when
/// it beats the value it reads there, so few of the atomics are issued.
/// Block `(32·DECODE_WARPS, 1, 1)`; grid `(ceil(rows / (DECODE_WARPS · 4)), 1, 1)`: warp `i`
/// computes rows `4i .. 4i + 4`.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn lm_head_argmax(
    logits: *mut f32,
    best: *mut u64,
    x: *const f32,
    norm: *const u16,
    eps: f32,
    w: *const u16,
    rows: u32,
    cols: u32,
) {
    let (rows, cols) = (rows as usize, cols as usize);
    const N: usize = LM_HEAD_ROWS_PER_WARP;
    let first = global_warp() * N;
    if first >= rows {
        launch_dependents();
        return;
    }
    // Rows past the end repeat the last row; their results are dropped.
    let mut ptrs = [w; N];
    for (k, p) in ptrs.iter_mut().enumerate() {
        *p = unsafe { w.add((first + k).min(rows - 1) * cols) };
    }
    let team = Team::warp();
    let batch = unsafe { prologue::<N, 2>(team, ptrs, cols) };
    wait_for_previous_grid();
    let ys = warp_finish::<N, true>(unsafe { partial_dots::<N, 2, true>(team, ptrs, batch, x, norm, cols) }, cols, eps);
    let mut mine = 0u64;
    for (k, &y) in ys.iter().enumerate() {
        let r = first + k;
        if r >= rows {
            break;
        }
        if lane() == k as u32 {
            unsafe { *logits.add(r) = y };
        }
        if y == y {
            let bits = y.to_bits();
            let key = if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 };
            mine = mine.max(((key as u64) << 32) | (u32::MAX - r as u32) as u64);
        }
    }
    if lane() == 0 && mine > unsafe { load_relaxed_u64(best) } {
        unsafe { atomic_max_u64(best, mine) };
    }
}

/// The end of a greedy decode step, so that the next step needs nothing from the host: with
/// `p = io[0]` (the position just run) and `id = u32::MAX − (best as u32)` (the token
/// `lm_head_argmax` chose; `u32::MAX` where every logit was NaN, which the next step's embedding
/// turns into NaN again), `chosen[p] = id` and `io = [p + 1, id]`, the next step's position and
/// token. The host copies `io` in once, replays the step graph `n` times, and copies the `n`
/// chosen ids back once.
/// Layout: `io` `[2]` (the `[pos0, id]` every decode kernel reads), `chosen` `[max_seq]`.
/// Block `(32, 1, 1)`, grid `(1, 1, 1)`; may be launched with programmatic dependent launch.
/// CPU twin: `host::cuda::decode_best` and the position step of `Engine::decode_greedy`.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn greedy_advance(io: *mut u32, chosen: *mut u32, best: *const u64, max_seq: u32) {
    launch_dependents();
    wait_for_previous_grid();
    if thread_x() != 0 {
        return;
    }
    let p = unsafe { *io };
    let id = u32::MAX - unsafe { *best } as u32;
    if p < max_seq {
        unsafe { *chosen.add(p as usize) = id };
    }
    unsafe {
        *io = p + 1;
        *io.add(1) = id;
    }
}

/// Residual product for one token: `out[r] += W[r] · x` (the attention output projection and the
/// MLP down projection, whose results are added to the residual stream).
/// Layout: `w` `[rows, cols]`, `x` `[cols]`, `out` `[rows]`, `out` not aliasing `x`.
/// Block `(128, 1, 1)`, dynamic shared memory `32 · 4` bytes; grid `(rows, 1, 1)`: one block per
/// row, its 128 threads sharing the row's chunks (a batch of four each, the next in flight while
/// one is used), then a block reduction. These products have few rows of many columns (896 × 4864
/// for the 0.5B down projection): a warp per row would leave too few loads in flight. For rows
/// past 1,024 columns whose blocks all fit on the GPU at once the host uses
/// `residual_matvec_decode_{3,5,10}` instead (the whole row in flight).
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn residual_matvec_decode(out: *mut f32, x: *const f32, w: *const u16, rows: u32, cols: u32) {
    let (r, cols) = (block_x() as usize, cols as usize);
    if r >= rows as usize {
        launch_dependents();
        return; // the whole block
    }
    let team = Team::block();
    let row = unsafe { [w.add(r * cols)] };
    let first = unsafe { prologue::<1, 4>(team, row, cols) };
    wait_for_previous_grid();
    let before = if thread_x() == 0 { unsafe { *out.add(r) } } else { 0.0 }; // issued before the products
    let ([part], _) = unsafe { partial_dots::<1, 4, false>(team, row, first, x, core::ptr::null(), cols) };
    let y = unsafe { block_sum(part, dynamic_shared::<f32>()) };
    if thread_x() == 0 {
        unsafe { *out.add(r) = before + y };
    }
}

/// [`residual_matvec_decode`] with the block's whole row in flight: each thread loads all `B` of
/// its 16-byte chunks of row `blockIdx.x` (`cols ≤ 8·B·blockDim.x`) before the wait, then the
/// same products and block sum. Block `(T, 1, 1)` (any multiple of 32), dynamic shared memory
/// `32 · 4` bytes, grid `(rows, 1, 1)`. CPU twin as [`residual_matvec_decode`]'s.
#[inline(always)]
unsafe fn residual_matvec_decode_inflight<const B: usize>(out: *mut f32, x: *const f32, w: *const u16, rows: u32, cols: u32) {
    let (r, cols) = (block_x() as usize, cols as usize);
    if r >= rows as usize {
        launch_dependents();
        return; // the whole block
    }
    let team = Team::block();
    let row = unsafe { [w.add(r * cols)] };
    let ws = unsafe { prologue::<1, B>(team, row, cols) };
    wait_for_previous_grid();
    let before = if thread_x() == 0 { unsafe { *out.add(r) } } else { 0.0 };
    let mut acc = [0.0f32; 1];
    let xs = unsafe { batch_inputs::<B, false>(team, x, core::ptr::null(), 0, cols, &mut 0.0) };
    add_dots(&mut acc, &ws, &xs);
    let y = unsafe { block_sum(acc[0], dynamic_shared::<f32>()) };
    if thread_x() == 0 {
        unsafe { *out.add(r) = before + y };
    }
}

/// [`residual_matvec_decode_inflight`] with three chunks a thread.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn residual_matvec_decode_3(out: *mut f32, x: *const f32, w: *const u16, rows: u32, cols: u32) {
    unsafe { residual_matvec_decode_inflight::<3>(out, x, w, rows, cols) }
}

/// [`residual_matvec_decode_inflight`] with five chunks a thread.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn residual_matvec_decode_5(out: *mut f32, x: *const f32, w: *const u16, rows: u32, cols: u32) {
    unsafe { residual_matvec_decode_inflight::<5>(out, x, w, rows, cols) }
}

/// [`residual_matvec_decode_inflight`] with ten chunks a thread.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn residual_matvec_decode_10(out: *mut f32, x: *const f32, w: *const u16, rows: u32, cols: u32) {
    unsafe { residual_matvec_decode_inflight::<10>(out, x, w, rows, cols) }
}
