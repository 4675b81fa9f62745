//! Matrix product with bf16 weights and f32 activations for a chunk of prompt tokens, on tensor
//! cores (the one-token products of a decode step are in `decode.rs`).
//!
//! Math: `y[t, r] = bias[r] + Σ_c x[t, c] · w[r, c]` for `t < tokens`, `r < rows`; `bias` may
//! be null. The epilogue (`launch_shapes.rs`) then either stores `out[t, r] = y[t, r]`
//! (`EPILOGUE_STORE`), adds it to what `out` holds (`EPILOGUE_ACCUMULATE`: the residual stream,
//! which is how the residual adds are fused), or, for the MLP's gate and up products in one, takes
//! the rows in pairs (`EPILOGUE_SWIGLU`: row `2i` a gate row, row `2i + 1` the up row of the same
//! unit) and stores
//! `out[t, i] = silu(y[t, 2i]) · y[t, 2i + 1]`, `silu(z) = z / (1 + e^{−z})`. `out` must not alias
//! `x`.
//!
//! Layout: `w` is `[rows, cols]` bf16 bits, row-major; `x` is `[tokens, cols]` f32; `out` is
//! `[tokens, rows]` f32 (`[tokens, rows / 2]` with the SwiGLU epilogue, `rows` even).
//!
//! The kernel is [`matmul_tc`]; its K range may be split over several blocks per output tile
//! (split-K, for the small grids of short prompts), the last block of a tile adding the splits'
//! partial sums in a fixed order, so the result does not depend on which block finishes first.

use crate::device::*;
use crate::launch_shapes::{EPILOGUE_ACCUMULATE, EPILOGUE_SWIGLU};
use crate::launch_shapes::{TC_K, TC_STAGE_BYTES, TC_STAGES, TC_TILE, TC_W_STRIDE, TC_X_STRIDE};

/// The prompt-chunk product on tensor cores (the module doc has the math, the epilogues and the
/// layout): `y[t, r] = bias[r] + Σ_c x[t, c] · w[r, c]`, then the epilogue `epilogue`.
///
/// Precision: the weights are bf16 already; each f32 activation is split into two bf16,
/// `x = hi + lo` (`hi` its top 8 significant bits, `lo` the next 8), and both halves are
/// multiplied (two `mma` per tile), so the product sees 16 of x's 24 bits, with f32 accumulation:
/// relative error ~1e-5 against an f64 sum, where bf16 activations alone give ~2e-3.
///
/// Tiling: a block computes 64 tokens × 64 rows; its 4 warps each 32 × 32 (2 × 4 tiles of
/// 16 × 8). The K dimension goes 32 columns at a time through [`TC_STAGES`] shared-memory stages
/// that `cp.async` fills while earlier stages are multiplied (x as f32, split into its halves when
/// a fragment is read; w as it is). Ragged edges load zeros and store nothing. With `cols` not a
/// multiple of 8 the tiles are filled by ordinary loads instead (16-byte copies would be
/// misaligned).
///
/// Split-K: block `(bx, by, z)` of a grid with `S = gridDim.z` covers the K steps
/// `[z·per, (z+1)·per)`, `per = ceil(ceil(cols/32) / S)` (the host picks `S` so that none is
/// empty). With `S > 1` each block stores its 64 × 64 partial sums in
/// `work[(z · tiles + tile) · 4096 ..]` (`tiles = gridDim.x · gridDim.y`) and counts itself in
/// `counters[tile]`; the last of a tile adds the `S` partials in order `z = 0, 1, …` (so the
/// result is the same whichever block is last), then the bias and the epilogue, writes `out` and
/// sets the counter back to 0. `counters` must be zero before the first launch; with `S = 1`, `work`
/// and `counters` are not touched (may be null).
///
/// Launch: grid `(ceil(rows / 64), ceil(tokens / 64), S)`, block `(128, 1, 1)`, dynamic shared
/// memory [`TC_SHARED_BYTES`] (these constants are in `launch_shapes.rs`). sm_80 or newer. It may
/// be launched with programmatic dependent launch: it waits for the grid before it
/// (`griddepcontrol.wait`) before its first copy.
/// CPU twin: `host::cpu::ops::matmul` (then `ops::swiglu` for the SwiGLU epilogue).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "ptx-kernel" fn matmul_tc(
    out: *mut f32,
    x: *const f32,
    w: *const u16,
    bias: *const f32,
    rows: u32,
    cols: u32,
    tokens: u32,
    epilogue: u32,
    work: *mut f32,
    counters: *mut u32,
) {
    let (rows, cols, tokens) = (rows as usize, cols as usize, tokens as usize);
    let (r0, t0) = (block_x() as usize * TC_TILE, block_y() as usize * TC_TILE);
    let (first, n) = split_k_steps(cols, TC_K);
    let tid = thread_x() as usize;
    let (lane, warp) = (lane() as usize, warp_id() as usize);
    let (g, t) = (lane / 4, lane % 4);
    let (wm, wn) = (warp / 2 * 32, warp % 2 * 32); // this warp's token and row offsets in the tile
    let smem = dynamic_shared::<u8>();
    let base = dynamic_shared_addr();
    let aligned = cols % 8 == 0;
    // Stage `s` starts at byte `s · TC_STAGE_BYTES`: the x tile, then the w tile.
    let x_at = |row: usize, col: usize| (row * TC_X_STRIDE + col) * 4;
    let w_at = |row: usize, col: usize| TC_TILE * TC_X_STRIDE * 4 + (row * TC_W_STRIDE + col) * 2;

    // Filling a stage with K step `step`: 64 × 32 activations (512 pieces of 16 bytes, 4 per
    // thread: piece `i` is tile row `i·16 + tid/8`, columns `(tid mod 8)·4 ..+ 4`) and 64 × 32
    // weights (256 pieces, 2 per thread: row `i·32 + tid/4`, columns `(tid mod 4)·8 ..+ 8`).
    // Each piece's source row, destination and whether its row exists are worked out once here;
    // a step only adds its column offset.
    let (xr, xc, wr, wc) = (tid / 8, tid % 8 * 4, tid / 4, tid % 4 * 8);
    let x_rows: [(bool, *const f32, u32); 4] = core::array::from_fn(|i| {
        let tr = t0 + xr + 16 * i;
        (tr < tokens, x.wrapping_add(tr * cols + xc), x_at(xr + 16 * i, xc) as u32)
    });
    let w_rows: [(bool, *const u16, u32); 2] = core::array::from_fn(|i| {
        let r = r0 + wr + 32 * i;
        (r < rows, w.wrapping_add(r * cols + wc), w_at(wr + 32 * i, wc) as u32)
    });
    let fill = |step: usize, stage: u32| {
        let k0 = step * TC_K;
        if aligned {
            for i in 0..4 {
                let (ok, src, dst) = x_rows[i];
                let ok = ok && k0 + xc < cols;
                let src = if ok { src.wrapping_add(k0) } else { x };
                unsafe { cp_async_16(base + stage + dst, src as *const u8, if ok { 16 } else { 0 }) };
            }
            for i in 0..2 {
                let (ok, src, dst) = w_rows[i];
                let ok = ok && k0 + wc < cols;
                let src = if ok { src.wrapping_add(k0) } else { w };
                unsafe { cp_async_16(base + stage + dst, src as *const u8, if ok { 16 } else { 0 }) };
            }
            return;
        }
        for i in 0..4 {
            let (row, tr) = (xr + 16 * i, t0 + xr + 16 * i);
            for k in 0..4 {
                let c = k0 + xc + k;
                let v = if tr < tokens && c < cols { unsafe { *x.add(tr * cols + c) } } else { 0.0 };
                unsafe { *(smem.add(stage as usize + x_at(row, xc + k)) as *mut f32) = v };
            }
        }
        for i in 0..2 {
            let (row, r) = (wr + 32 * i, r0 + wr + 32 * i);
            for k in 0..8 {
                let c = k0 + wc + k;
                let v = if r < rows && c < cols { unsafe { *w.add(r * cols + c) } } else { 0 };
                unsafe { *(smem.add(stage as usize + w_at(row, wc + k)) as *mut u16) = v };
            }
        }
    };

    // This warp's products over the stage at byte `stage`. Every fragment address is the stage's,
    // plus this thread's offset (`xf`, `wf`), plus a constant.
    let (xf, wf) = (base + x_at(wm + g, 2 * t) as u32, base + w_at(wn + g, 2 * t) as u32);
    let mut acc = [[[0.0f32; 4]; 4]; 2];
    let multiply = |stage: u32| {
        for kk in (0..TC_K).step_by(16) {
            let mut a_hi = [[0u32; 4]; 2];
            let mut a_lo = [[0u32; 4]; 2];
            for m in 0..2 {
                for q in 0..4 {
                    let (dr, dc) = ((q & 1) * 8, (q >> 1) * 8);
                    let v = unsafe { load_shared_v2_f32(xf + stage + x_at(m * 16 + dr, kk + dc) as u32) };
                    (a_hi[m][q], a_lo[m][q]) = split_bf16x2(v[0], v[1]);
                }
            }
            for n in 0..4 {
                let at = wf + stage + (w_at(n * 8, kk) - w_at(0, 0)) as u32;
                let b = unsafe { [load_shared_u32(at), load_shared_u32(at + 16)] };
                for m in 0..2 {
                    mma_bf16(&mut acc[m][n], a_lo[m], b);
                    mma_bf16(&mut acc[m][n], a_hi[m], b);
                }
            }
        }
    };

    // Launched with programmatic dependent launch after a small kernel (the host's choice):
    // nothing is read before that kernel is done.
    wait_for_previous_grid();
    // The pipeline (`k_pipeline`): TC_STAGES − 1 steps in flight before the first product.
    k_pipeline::<TC_STAGES, { TC_STAGES as u32 - 2 }>(
        n,
        TC_STAGE_BYTES as u32,
        || {},
        |j, stage| fill(first + j, stage),
        multiply,
    );

    if grid_dim_z() > 1 {
        let mut flat: [f32; 32] = core::array::from_fn(|j| acc[j / 16][j / 4 % 4][j % 4]);
        if !unsafe { split_k_sum(&mut flat, work, counters, smem as *mut u32) } {
            return;
        }
        acc = core::array::from_fn(|m| core::array::from_fn(|n| core::array::from_fn(|q| flat[m * 16 + n * 4 + q])));
    }

    // This thread holds, for each 16 × 8 tile, rows `g` and `g + 8` of it at columns `2t` and
    // `2t + 1` (accumulators `q = 2·half + k`); stored 8 pairs at a time (`n`, `half` of one `m`).
    for m in 0..2 {
        let at = core::array::from_fn(|p| (t0 + wm + m * 16 + g + 8 * (p % 2), r0 + wn + p / 2 * 8 + 2 * t));
        let v = core::array::from_fn(|p| [acc[m][p / 2][2 * (p % 2)], acc[m][p / 2][2 * (p % 2) + 1]]);
        unsafe { store_pairs::<8>(out, bias, rows, tokens, epilogue, at, v) };
    }
}

/// The K steps of this block when the K range (`cols` columns, `k` a step) is split over the
/// grid's `z` dimension (see [`matmul_tc`]): block `z` of `S = gridDim.z` covers steps
/// `[z·per, (z+1)·per)`, `per = ceil(ceil(cols/k) / S)`; returns (its first step, its count).
#[inline(always)]
pub(crate) fn split_k_steps(cols: usize, k: usize) -> (usize, usize) {
    let steps = cols.div_ceil(k);
    let per = steps.div_ceil(grid_dim_z() as usize);
    let first = block_z() as usize * per;
    (first, steps.min(first + per).saturating_sub(first))
}

/// The K loop of both prompt-product kernels over `n` steps and `STAGES` shared-memory stages of
/// `stage_bytes` each, filled by `cp.async` with `STAGES − 1` steps in flight before the first
/// product. Pass `j` fills step `j` (`fill(j, stage)`; empty commits past the last keep the group
/// count regular); from pass `STAGES − 1` on it first waits for step `j − (STAGES − 1)` (`WAIT` =
/// `STAGES − 2` groups may stay in flight), calls `visible` (what the products need before the
/// barrier), and the barrier (every thread is then past the stage it refills), and multiplies
/// that step after the refill (`multiply(stage)`, which must be done with the stage when it
/// returns). Stages go round by byte offset, without a division.
#[inline(always)]
pub(crate) fn k_pipeline<const STAGES: usize, const WAIT: u32>(
    n: usize,
    stage_bytes: u32,
    visible: impl Fn(),
    mut fill: impl FnMut(usize, u32),
    mut multiply: impl FnMut(u32),
) {
    let end = STAGES as u32 * stage_bytes;
    let next = |stage: u32| if stage + stage_bytes == end { 0 } else { stage + stage_bytes };
    let (mut refill, mut current) = (0u32, 0u32);
    for j in 0..n + STAGES - 1 {
        let product = j >= STAGES - 1;
        if product {
            cp_async_wait::<WAIT>();
            visible();
            sync_threads();
        }
        if j < n {
            fill(j, refill);
        }
        cp_async_commit();
        refill = next(refill);
        if product {
            multiply(current);
            current = next(current);
        }
    }
}

/// Split-K (see [`matmul_tc`]): publishes this block's `N` partial sums a thread (element `j` of
/// thread `tid` at `j · blockDim.x + tid` of the block's slot, `N · blockDim.x` floats, slot
/// `z · tiles + tile` with `z = blockIdx.z`, `tile = blockIdx.y · gridDim.x + blockIdx.x`,
/// `tiles = gridDim.x · gridDim.y`) and counts the block in `counters[tile]`.
/// Returns false in every block but the tile's last; in that one `acc` becomes the sum of the
/// `gridDim.z` partials, added in the order `z = 0, 1, …` from zero, whichever block was last.
/// `flag` is one `u32` of shared memory no thread still reads. Every thread must call it.
#[inline(always)]
pub(crate) unsafe fn split_k_sum<const N: usize>(
    acc: &mut [f32; N],
    work: *mut f32,
    counters: *mut u32,
    flag: *mut u32,
) -> bool {
    let (threads, tid) = (block_dim_x() as usize, thread_x() as usize);
    let tiles = (grid_dim_x() * grid_dim_y()) as usize;
    let tile = block_y() as usize * grid_dim_x() as usize + block_x() as usize;
    let (z, splits) = (block_z() as usize, grid_dim_z() as usize);
    let slot = |zz: usize| unsafe { work.add((zz * tiles + tile) * N * threads) };
    let mine = slot(z);
    for (j, &a) in acc.iter().enumerate() {
        unsafe { *mine.add(j * threads + tid) = a };
    }
    if !unsafe { last_block_to_arrive(counters.add(tile), splits as u32, flag) } {
        return false;
    }
    *acc = [0.0; N];
    for zz in 0..splits {
        let part = slot(zz);
        for (j, a) in acc.iter_mut().enumerate() {
            *a += unsafe { load_relaxed_f32(part.add(j * threads + tid)) };
        }
    }
    true
}

/// The bias and the epilogue (module doc) for `N` of a thread's output pairs: pair `i` is
/// `(tt, rr)` and `(tt, rr + 1)` with `at[i] = (tt, rr)`, `rr` even, and the products `v[i]`; with
/// `EPILOGUE_SWIGLU` a pair is a gate output and its up output, stored as one value at
/// `(tt, rr / 2)`. Outputs past `tokens` or `rows` are not stored.
///
/// What it reads (the bias; `out` for the accumulate epilogue) it loads for all `N` pairs before
/// the first store: the compiler may not move a load above a store that might alias it, so pair
/// by pair each load would wait a round trip to L2 after the store before it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn store_pairs<const N: usize>(
    out: *mut f32,
    bias: *const f32,
    rows: usize,
    tokens: usize,
    epilogue: u32,
    at: [(usize, usize); N],
    mut v: [[f32; 2]; N],
) {
    let exists = |i: usize, k: usize| at[i].0 < tokens && at[i].1 + k < rows;
    for i in 0..N {
        for k in 0..2 {
            if exists(i, k) {
                let (tt, rr) = at[i];
                unsafe {
                    if !bias.is_null() {
                        v[i][k] += *bias.add(rr + k);
                    }
                    if epilogue == EPILOGUE_ACCUMULATE {
                        v[i][k] += *out.add(tt * rows + rr + k);
                    }
                }
            }
        }
    }
    for (i, &(tt, rr)) in at.iter().enumerate() {
        if epilogue == EPILOGUE_SWIGLU {
            if exists(i, 1) {
                let [gate, up] = v[i];
                unsafe { *out.add(tt * (rows / 2) + rr / 2) = gate / (1.0 + exp(-gate)) * up };
            }
            continue;
        }
        for k in 0..2 {
            if exists(i, k) {
                unsafe { *out.add(tt * rows + rr + k) = v[i][k] };
            }
        }
    }
}
