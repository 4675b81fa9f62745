//! The prompt-chunk product of `matmul.rs` on Hopper's warpgroup tensor cores (`wgmma`, sm_90a
//! only: this module is compiled into the `sm_90a` PTX alone, and the host uses it where that
//! PTX is loaded and `cols % 8 == 0`; elsewhere `matmul_tc`).
//!
//! Math, epilogues, layout and split-K are `matmul_tc`'s (see `matmul.rs`):
//! `y[t, r] = bias[r] + Σ_c x[t, c] · w[r, c]`, then store, accumulate or SwiGLU of row pairs, and
//! the same precision: each f32 activation split into two bf16 halves, both multiplied.
//!
//! Why a second kernel: ncu on an H100 (BENCHMARKS.md, step 18) shows `matmul_tc` bound by L2
//! requests (its 64 × 64 tiles read every activation once per 64 weight rows, every weight once
//! per 64 tokens, and each `cp.async.cg` of 16 bytes costs about a request) and by issue slots
//! (32 `mma.sync` a K step, each activation split by two warps). Here a block's 128 × 128 tile
//! halves the L2 bytes of each product, and a K step of 64 is eight `wgmma` instructions a
//! warpgroup, each multiplying a 64 × 16 slice of split activations (split once, in registers)
//! by 128 weight rows read by the tensor cores straight from shared memory. Every copy moves whole
//! 128-byte lines past L1 into whole shared lines: the weights in `wgmma`'s 128-byte swizzle
//! layout, one row's step a line (steps 29–30: the L1/shared-memory pipe was this kernel's limit,
//! with 5 M bank conflicts in copies of 64 bytes a row spread over four planes). It pays on large
//! products only (the host's `wgmma_pays`): on short ones its bigger tiles leave the GPU emptier.

use crate::device::*;
use crate::launch_shapes::{WG_K, WG_ROWS, WG_SMALL_TOKENS, WG_STAGES, WG_TOKENS, WG_X_STRIDE};
use crate::launch_shapes::{wg_stage_bytes, wg_threads, wg_x_bytes};
use crate::matmul::{k_pipeline, split_k_steps, split_k_sum, store_pairs};

/// `matmul_tc`'s product (module doc) on `wgmma`: `y[t, r] = bias[r] + Σ_c x[t, c] · w[r, c]`,
/// then the epilogue `epilogue`. Needs `cols % 8 == 0` and 16-byte aligned `x` and `w`.
///
/// Tiling: a block (two warpgroups, 8 warps) computes 128 tokens × 128 rows, warp `w` tokens
/// `16w .. 16w + 16` of it for all 128 rows (so the two warpgroups share each weight tile); each
/// thread holds 64 accumulators. The K dimension goes 64 columns a step through [`WG_STAGES`]
/// shared-memory stages that `cp.async` fills a step ahead of the products (`launch_shapes.rs` has
/// the stage layout): the activations as f32, read into registers and split into their bf16 halves
/// there (the A operand of `wgmma` may come from registers); the weights in `wgmma`'s 128-byte
/// swizzle layout, read by the tensor cores from shared memory through a descriptor. Ragged edges
/// load zeros and store nothing.
///
/// Split-K, `work` and `counters`: as `matmul_tc`, with tiles of 128 × 128 (16,384 floats a slot).
///
/// Launch: grid `(ceil(rows / 128), ceil(tokens / 128), S)`, block `(256, 1, 1)`, dynamic shared
/// memory `WG_SHARED_BYTES` (above 48 KiB: the host raises the kernel's limit). sm_90a. May be
/// launched with programmatic dependent launch, as `matmul_tc`.
/// CPU twin: `host::cpu::ops::matmul` (then `ops::swiglu` for the SwiGLU epilogue).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "ptx-kernel" fn matmul_wgmma(
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
    unsafe { wgmma_product::<WG_TOKENS>(out, x, w, bias, rows, cols, tokens, epilogue, work, counters) }
}

/// [`matmul_wgmma`] with tiles of 64 tokens × 128 rows: one warpgroup a block (4 warps of 16
/// tokens), 64 × 128 split-K slots. Same math, layout and epilogues. A 512-token prompt's gate/up
/// product is 304 tiles of 128 tokens on 264 block slots (two an SM): a second wave 15 % full;
/// here 608 tiles on 396 slots (three an SM).
/// Launch: grid `(ceil(rows / 128), ceil(tokens / 64), S)`, block `(128, 1, 1)`, dynamic shared
/// memory `wg_shared_bytes(64)` (69,632 bytes). sm_90a. CPU twin as [`matmul_wgmma`].
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "ptx-kernel" fn matmul_wgmma_64(
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
    unsafe { wgmma_product::<WG_SMALL_TOKENS>(out, x, w, bias, rows, cols, tokens, epilogue, work, counters) }
}

/// The body of both kernels, for tiles of `TOK` tokens (a multiple of 64: whole warpgroups).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn wgmma_product<const TOK: usize>(
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
    let threads = wg_threads(TOK);
    // 16-byte pieces of one stage's activation and weight tiles that each thread copies (8, and
    // 4 or 8), and the tile rows one pass of the block's threads copies: 16 threads a row of
    // activations (64 f32), 8 a row of weights (64 bf16).
    let (x_pieces, w_pieces) = (TOK * WG_K / 4 / threads, WG_ROWS * WG_K / 8 / threads);
    let (x_pass_rows, w_pass_rows) = (threads / 16, threads / 8);
    let x_bytes = wg_x_bytes(TOK);
    let (rows, cols, tokens) = (rows as usize, cols as usize, tokens as usize);
    let (r0, t0) = (block_x() as usize * WG_ROWS, block_y() as usize * TOK);
    let (first, n) = split_k_steps(cols, WG_K);
    let tid = thread_x() as usize;
    let (g, t, warp) = (lane() as usize / 4, lane() as usize % 4, warp_id() as usize);
    let base = dynamic_shared_addr();
    let x_at = |row: usize, col: usize| (row * WG_X_STRIDE + col) * 4;
    // Weight row `r`, 16-byte chunk `c` (columns `8c .. 8c + 8`) of a step: the 128-byte swizzle.
    // `wgmma` swizzles by shared address bits, so this layout needs the tile on a 1,024-byte
    // boundary: the stage offsets are multiples of 1,024, and the dynamic shared memory starts on
    // one (on the H100 with driver 580; were it not, the kernel test's products would be wrong).
    let w_at = |row: usize, chunk: usize| x_bytes + row * 128 + ((chunk ^ (row & 7)) * 16);

    // Filling a stage with K step `step`: TOK × 64 activations (8 pieces of 16 bytes per thread:
    // row `(threads/16)·i + tid/16`, columns `(tid mod 16)·4 ..+ 4`) and 128 × 64 weights (1,024
    // pieces, 4 or 8 per thread: row `(threads/8)·i + tid/8`, chunk `tid mod 8`): each 8 (or 16)
    // threads copy one row's 128 (256) contiguous bytes of the step into one shared line (two),
    // past L1.
    let (xr, xc) = (tid / 16, tid % 16 * 4);
    let (wr, wc) = (tid / 8, tid % 8);
    let (x_src, x_dst) = (x.wrapping_add((t0 + xr) * cols + xc), x_at(xr, xc) as u32);
    let (w_src, w_dst) = (w.wrapping_add((r0 + wr) * cols + wc * 8), w_at(wr, wc) as u32);
    // Interior tiles (every row and token present, the whole step inside `cols`) copy without
    // checks; edges zero-fill what lies outside.
    let interior = t0 + TOK <= tokens && r0 + WG_ROWS <= rows;
    let fill = |step: usize, stage: u32| {
        let k0 = step * WG_K;
        let full = interior && k0 + WG_K <= cols;
        // The row stride of the pieces, opaque to the compiler, so that it works out each piece's
        // source here instead of keeping eight pointers in registers across the K loop.
        let x_stride = opaque_usize(x_pass_rows * cols);
        for i in 0..x_pieces {
            let ok = full || (t0 + xr + x_pass_rows * i < tokens && k0 + xc < cols);
            let src = if ok { x_src.wrapping_add(i * x_stride + k0) } else { x };
            let dst = base + stage + x_dst + (x_pass_rows * i * WG_X_STRIDE * 4) as u32;
            unsafe { cp_async_16(dst, src as *const u8, if ok { 16 } else { 0 }) };
        }
        for i in 0..w_pieces {
            let ok = full || (r0 + wr + w_pass_rows * i < rows && k0 + wc * 8 < cols);
            let src = if ok { w_src.wrapping_add(w_pass_rows * i * cols + k0) } else { w };
            let dst = base + stage + w_dst + (w_pass_rows * i * 128) as u32;
            unsafe { cp_async_16(dst, src as *const u8, if ok { 16 } else { 0 }) };
        }
    };

    // The products over the stage at byte `stage`, two halves of 32 columns: this warp's A
    // fragments (tokens `16·warp + g` and `+ 8`, columns `2t`, `2t + 8` of each 16) split into bf16
    // halves, and the weights of each 16 columns as B, through a descriptor starting that many
    // bytes into the swizzled rows.
    let xf = base + x_at(16 * warp + g, 2 * t) as u32;
    let mut acc = [0.0f32; 64];
    let multiply = |stage: u32| {
        for kk in 0..WG_K / 32 {
            let mut a = [[[0u32; 4]; 2]; 2];
            for (h, ah) in a.iter_mut().enumerate() {
                for q in 0..4 {
                    let (dr, dc) = ((q & 1) * 8, (q >> 1) * 8);
                    let v = unsafe { load_shared_v2_f32(xf + stage + x_at(dr, 32 * kk + h * 16 + dc) as u32) };
                    (ah[1][q], ah[0][q]) = split_bf16x2(v[0], v[1]);
                }
            }
            let b = core::array::from_fn(|h| wgmma_desc_sw128(base + stage + (x_bytes + 64 * kk + 32 * h) as u32));
            unsafe { wgmma_m64n128k32(&mut acc, a, b) };
        }
    };

    // Launched with programmatic dependent launch after a small kernel (the host's choice):
    // nothing is read before that kernel is done.
    wait_for_previous_grid();
    // The pipeline, `matmul_tc`'s (`k_pipeline`), with the steps made visible to the tensor
    // cores' reads by a proxy fence before the barrier; the stage a pass refills was multiplied
    // by the pass before, whose products are complete (`wgmma_m64n128k32` waits for them).
    k_pipeline::<WG_STAGES, { WG_STAGES as u32 - 2 }>(
        n,
        wg_stage_bytes(TOK) as u32,
        fence_proxy_async_shared,
        |j, stage| fill(first + j, stage),
        multiply,
    );

    if grid_dim_z() > 1 {
        if !unsafe { split_k_sum(&mut acc, work, counters, dynamic_shared::<u32>()) } {
            return;
        }
    }

    // Accumulators `4j .. 4j + 4`: tokens `g`, `g + 8` of this warp's 16 at rows `8j + 2t`, `+ 1`;
    // stored 4 pairs at a time (`j` = `jj`, `jj + 1`, each `half`).
    for jj in (0..WG_ROWS / 8).step_by(2) {
        let at = core::array::from_fn(|p| (t0 + 16 * warp + g + 8 * (p % 2), r0 + 8 * (jj + p / 2) + 2 * t));
        let v = core::array::from_fn(|p| {
            let j = jj + p / 2;
            [acc[4 * j + 2 * (p % 2)], acc[4 * j + 2 * (p % 2) + 1]]
        });
        unsafe { store_pairs::<4>(out, bias, rows, tokens, epilogue, at, v) };
    }
}
