//! Matrix product with bf16 weights and f32 activations for a chunk of prompt tokens, on tensor
//! cores (the one-token products of a decode step are in `decode.rs`).
//!
//! Math: `out[t, r] = (accumulate ? out[t, r] : 0) + bias[r] + Σ_c x[t, c] · w[r, c]`
//! for `t < tokens`, `r < rows`; `bias` may be null. With `accumulate` the product is added to
//! what `out` holds (the residual stream), which is how the residual adds are fused. `out` must
//! not alias `x`.
//!
//! Layout: `w` is `[rows, cols]` bf16 bits, row-major; `x` is `[tokens, cols]` f32; `out` is
//! `[tokens, rows]` f32.

use crate::device::*;
use crate::launch_shapes::{TC_K, TC_SHARED_BYTES, TC_STRIDE, TC_TILE};

/// f32 → bf16 bits, rounded to nearest even (in the low 16 bits).
#[inline(always)]
fn bf16_bits(x: f32) -> u32 {
    let b = x.to_bits();
    (b + 0x7fff + ((b >> 16) & 1)) >> 16
}

/// `x = hi + lo` with `hi`, `lo` bf16 (bits): `hi` holds x's top 8 significant bits, `lo` the next 8.
#[inline(always)]
fn split_bf16(x: f32) -> (u32, u32) {
    let hi = bf16_bits(x);
    (hi, bf16_bits(x - f32::from_bits(hi << 16)))
}

/// `d = a·b + d` for one 16 × 8 × 16 bf16 tile (`mma.sync.aligned.m16n8k16.row.col`), f32
/// accumulate. Each register holds two bf16, the lower column (or k) in the low half. Fragments,
/// with `g = lane / 4`, `t = lane mod 4`: `a = [A(g, 2t..), A(g+8, 2t..), A(g, 2t+8..), A(g+8, 2t+8..)]`,
/// `b = [B(2t.., g), B(2t+8.., g)]`, `d = [D(g, 2t), D(g, 2t+1), D(g+8, 2t), D(g+8, 2t+1)]`.
#[inline(always)]
fn mma_bf16(d: &mut [f32; 4], a: [u32; 4], b: [u32; 2]) {
    unsafe {
        core::arch::asm!(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d0}, {d1}, {d2}, {d3}}}, {{{a0}, {a1}, {a2}, {a3}}}, {{{b0}, {b1}}}, {{{d0}, {d1}, {d2}, {d3}}};",
            d0 = inout(reg32) d[0], d1 = inout(reg32) d[1], d2 = inout(reg32) d[2], d3 = inout(reg32) d[3],
            a0 = in(reg32) a[0], a1 = in(reg32) a[1], a2 = in(reg32) a[2], a3 = in(reg32) a[3],
            b0 = in(reg32) b[0], b1 = in(reg32) b[1],
            options(pure, nomem, nostack, preserves_flags)
        );
    }
}

/// The prompt-chunk product on tensor cores (the module doc has the math and layout):
/// `out[t, r] = (accumulate ? out[t, r] : 0) + bias[r] + Σ_c x[t, c] · w[r, c]`.
///
/// Precision: the weights are bf16 already; each f32 activation is split into two bf16,
/// `x = hi + lo` (`hi` its top 8 significant bits, `lo` the next 8), and both halves are
/// multiplied (two `mma` per tile), so the product sees 16 of x's 24 bits, with f32 accumulation:
/// relative error ~1e-5 against an f64 sum, where bf16 activations alone give ~2e-3.
///
/// Tiling: a block computes 64 tokens × 64 rows; its 4 warps each 32 × 32 (2 × 4 tiles of
/// 16 × 8). The K dimension goes 32 columns at a time through shared memory (x split into its two
/// halves while it is stored, w as it is, each `[64][40]` bf16); the next step's tiles are loaded
/// into registers while the current step's products run. Ragged edges load zeros and store nothing.
/// Launch: grid `(ceil(rows / 64), ceil(tokens / 64), 1)`, block `(128, 1, 1)`, dynamic shared
/// memory [`TC_SHARED_BYTES`] (these constants are in `launch_shapes.rs`). sm_80 or newer. CPU twin: `host::cpu::ops::matmul`.
#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn matmul_tc(
    out: *mut f32,
    x: *const f32,
    w: *const u16,
    bias: *const f32,
    rows: u32,
    cols: u32,
    tokens: u32,
    accumulate: u32,
) {
    let (rows, cols, tokens) = (rows as usize, cols as usize, tokens as usize);
    let (r0, t0) = (block_x() as usize * TC_TILE, block_y() as usize * TC_TILE);
    let tid = thread_x() as usize;
    let (lane, warp) = (lane() as usize, warp_id() as usize);
    let (g, t) = (lane / 4, lane % 4);
    let (wm, wn) = (warp / 2 * 32, warp % 2 * 32); // this warp's token and row offsets in the tile
    let xh = dynamic_shared::<u16>();
    let (xl, ws) = unsafe { (xh.add(TC_TILE * TC_STRIDE), xh.add(2 * TC_TILE * TC_STRIDE)) };
    // The 32-bit word holding elements (row, col) and (row, col + 1) of a tile (col even).
    let word = |tile: *mut u16, row: usize, col: usize| unsafe { tile.add(row * TC_STRIDE + col) as *mut u32 };
    let mut acc = [[[0.0f32; 4]; 4]; 2];

    // One K step's share of this thread, global memory → registers: 4 × 4 activations (f32) and
    // 2 × 8 weights (bf16 pairs), zeros past the edges.
    let load = |k0: usize| -> ([[f32; 4]; 4], [[u32; 4]; 2]) {
        let mut xv = [[0.0f32; 4]; 4];
        for (i, v) in xv.iter_mut().enumerate() {
            let e = (i * 128 + tid) * 4; // element of the 64 × 32 tile, 4 at a time
            let (tr, tc) = (e / TC_K, e % TC_K);
            let src = (t0 + tr) * cols + k0 + tc;
            if t0 + tr < tokens && k0 + tc + 4 <= cols && cols % 4 == 0 {
                *v = unsafe { load_v4_f32(x.add(src)) };
            } else {
                for (k, vk) in v.iter_mut().enumerate() {
                    if t0 + tr < tokens && k0 + tc + k < cols {
                        *vk = unsafe { *x.add(src + k) };
                    }
                }
            }
        }
        let mut wv = [[0u32; 4]; 2];
        for (i, v) in wv.iter_mut().enumerate() {
            let e = (i * 128 + tid) * 8;
            let (wr, wc) = (e / TC_K, e % TC_K);
            let src = (r0 + wr) * cols + k0 + wc;
            if r0 + wr < rows && k0 + wc + 8 <= cols && cols % 8 == 0 {
                *v = unsafe { load_nc_v4(w.add(src) as *const u32) };
            } else {
                for (k, pair) in v.iter_mut().enumerate() {
                    for half in 0..2 {
                        let c = 2 * k + half;
                        if r0 + wr < rows && k0 + wc + c < cols {
                            *pair |= (unsafe { *w.add(src + c) } as u32) << (16 * half);
                        }
                    }
                }
            }
        }
        (xv, wv)
    };
    // Registers → the shared-memory tiles, the activations split into their two bf16 halves.
    let store = |(xv, wv): &([[f32; 4]; 4], [[u32; 4]; 2])| {
        for (i, v) in xv.iter().enumerate() {
            let e = (i * 128 + tid) * 4;
            let (tr, tc) = (e / TC_K, e % TC_K);
            for k in 0..2 {
                let ((h0, l0), (h1, l1)) = (split_bf16(v[2 * k]), split_bf16(v[2 * k + 1]));
                unsafe {
                    *word(xh, tr, tc + 2 * k) = h0 | (h1 << 16);
                    *word(xl, tr, tc + 2 * k) = l0 | (l1 << 16);
                }
            }
        }
        for (i, v) in wv.iter().enumerate() {
            let e = (i * 128 + tid) * 8;
            let (wr, wc) = (e / TC_K, e % TC_K);
            for (k, pair) in v.iter().enumerate() {
                unsafe { *word(ws, wr, wc + 2 * k) = *pair };
            }
        }
    };

    // Software pipeline: the next K step's loads are in flight while this one's products run.
    let mut next = load(0);
    let mut k0 = 0;
    while k0 < cols {
        store(&next);
        sync_threads();
        if k0 + TC_K < cols {
            next = load(k0 + TC_K);
        }
        for kk in (0..TC_K).step_by(16) {
            let mut a_hi = [[0u32; 4]; 2];
            let mut a_lo = [[0u32; 4]; 2];
            for m in 0..2 {
                let r = wm + m * 16 + g;
                for q in 0..4 {
                    let (dr, dc) = ((q & 1) * 8, (q >> 1) * 8);
                    unsafe {
                        a_hi[m][q] = *word(xh, r + dr, kk + 2 * t + dc);
                        a_lo[m][q] = *word(xl, r + dr, kk + 2 * t + dc);
                    }
                }
            }
            for n in 0..4 {
                let nr = wn + n * 8 + g;
                let b = unsafe { [*word(ws, nr, kk + 2 * t), *word(ws, nr, kk + 2 * t + 8)] };
                for m in 0..2 {
                    mma_bf16(&mut acc[m][n], a_lo[m], b);
                    mma_bf16(&mut acc[m][n], a_hi[m], b);
                }
            }
        }
        sync_threads();
        k0 += TC_K;
    }

    for m in 0..2 {
        for n in 0..4 {
            for q in 0..4 {
                let tt = t0 + wm + m * 16 + g + if q >= 2 { 8 } else { 0 };
                let rr = r0 + wn + n * 8 + 2 * t + (q & 1);
                if tt < tokens && rr < rows {
                    unsafe {
                        let o = out.add(tt * rows + rr);
                        let mut v = acc[m][n][q];
                        if !bias.is_null() {
                            v += *bias.add(rr);
                        }
                        if accumulate != 0 {
                            v += *o;
                        }
                        *o = v;
                    }
                }
            }
        }
    }
}
