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

/// Tokens and weight rows of one block tile of [`matmul_tc`], and the columns of one K step.
pub const TC_TILE: usize = 64;
const TC_K: usize = 32;
/// Per thread and K step: float4 loads of the x tile, 8-weight loads of the w tile.
const TC_X_LOADS: usize = TC_TILE * TC_K / (128 * 4);
const TC_W_LOADS: usize = TC_TILE * TC_K / (128 * 8);
/// Row stride of the shared-memory tiles, in f32: 4 of padding make the fragment reads below
/// fall on 32 different banks (`(4·g + t) mod 32` for the 8 × 4 lanes).
const TC_STRIDE: usize = TC_K + 4;

/// `x` rounded to TF32 (`cvt.rna.tf32.f32`): the 19 bits a tensor core reads, low 13 bits zero.
#[inline(always)]
fn tf32(x: f32) -> u32 {
    let r: u32;
    unsafe {
        core::arch::asm!("cvt.rna.tf32.f32 {r}, {x};", r = out(reg32) r, x = in(reg32) x,
                         options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// `d = a·b + d` for one 16 × 8 × 8 TF32 tile (`mma.sync.aligned.m16n8k8.row.col`), f32 accumulate.
/// Fragments, with `g = lane / 4`, `t = lane mod 4`: `a = [A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4)]`,
/// `b = [B(t, g), B(t+4, g)]`, `d = [D(g, 2t), D(g, 2t+1), D(g+8, 2t), D(g+8, 2t+1)]`.
#[inline(always)]
fn mma_tf32(d: &mut [f32; 4], a: [u32; 4], b: [u32; 2]) {
    unsafe {
        core::arch::asm!(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {{{d0}, {d1}, {d2}, {d3}}}, {{{a0}, {a1}, {a2}, {a3}}}, {{{b0}, {b1}}}, {{{d0}, {d1}, {d2}, {d3}}};",
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
/// Precision: tensor cores take TF32 operands (10 mantissa bits). A bf16 weight is exactly a TF32
/// value; an f32 activation is split as `x = hi + lo`, `hi = tf32(x)`, `lo = tf32(x − hi)`, and
/// both halves are multiplied (two `mma` per tile), so the product keeps about 21 of x's 24 bits
/// at twice the tensor-core work: relative error ~1e-5 against an f64 sum (the tensor cores'
/// f32 accumulation is not quite IEEE), where TF32 alone gives ~3e-4 and bf16 activations ~2e-3.
///
/// Tiling: a block computes 64 tokens × 64 rows; its 4 warps each 32 × 32 (2 × 4 tiles of
/// 16 × 8). The K dimension goes 32 columns at a time through shared memory: the x tile (f32)
/// and the w tile (bf16 widened to f32), both `[64][36]`; the next step's tiles are loaded into
/// registers while the current step's products run. Ragged edges load zeros and store nothing.
/// Launch: grid `(ceil(rows / 64), ceil(tokens / 64), 1)`, block `(128, 1, 1)`, dynamic shared
/// memory `2 · 64 · 36 · 4` bytes. sm_80 or newer. CPU twin: `host::cpu::ops::matmul`.
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
    let xs = dynamic_shared::<f32>();
    let ws = unsafe { xs.add(TC_TILE * TC_STRIDE) };
    let mut acc = [[[0.0f32; 4]; 4]; 2];

    // One K step's share of this thread, global memory → registers: 4 × 4 activations and
    // 2 × 8 weights (widened) for a 32-column step, zeros past the edges.
    let load = |k0: usize| -> ([[f32; 4]; TC_X_LOADS], [[f32; 8]; TC_W_LOADS]) {
        let mut xv = [[0.0f32; 4]; TC_X_LOADS];
        for (i, v) in xv.iter_mut().enumerate() {
            let e = (i * 128 + tid) * 4; // element of the 64 × TC_K tile, 4 at a time
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
        let mut wv = [[0.0f32; 8]; TC_W_LOADS];
        for (i, v) in wv.iter_mut().enumerate() {
            let e = (i * 128 + tid) * 8;
            let (wr, wc) = (e / TC_K, e % TC_K);
            let src = (r0 + wr) * cols + k0 + wc;
            if r0 + wr < rows && k0 + wc + 8 <= cols && cols % 8 == 0 {
                let packed = unsafe { load_nc_v4(w.add(src) as *const u32) };
                for k in 0..4 {
                    (v[2 * k], v[2 * k + 1]) = bf16x2_to_f32(packed[k]);
                }
            } else {
                for (k, vk) in v.iter_mut().enumerate() {
                    if r0 + wr < rows && k0 + wc + k < cols {
                        *vk = bf16_to_f32(unsafe { *w.add(src + k) });
                    }
                }
            }
        }
        (xv, wv)
    };
    // Registers → the shared-memory tiles.
    let store = |(xv, wv): &([[f32; 4]; TC_X_LOADS], [[f32; 8]; TC_W_LOADS])| {
        for (i, v) in xv.iter().enumerate() {
            let e = (i * 128 + tid) * 4;
            let (tr, tc) = (e / TC_K, e % TC_K);
            for (k, vk) in v.iter().enumerate() {
                unsafe { *xs.add(tr * TC_STRIDE + tc + k) = *vk };
            }
        }
        for (i, v) in wv.iter().enumerate() {
            let e = (i * 128 + tid) * 8;
            let (wr, wc) = (e / TC_K, e % TC_K);
            for (k, vk) in v.iter().enumerate() {
                unsafe { *ws.add(wr * TC_STRIDE + wc + k) = *vk };
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
        for kk in (0..TC_K).step_by(8) {
            let mut a_hi = [[0u32; 4]; 2];
            let mut a_lo = [[0u32; 4]; 2];
            for m in 0..2 {
                let base = unsafe { xs.add((wm + m * 16 + g) * TC_STRIDE + kk + t) };
                let vals = unsafe { [*base, *base.add(8 * TC_STRIDE), *base.add(4), *base.add(8 * TC_STRIDE + 4)] };
                for q in 0..4 {
                    let hi = tf32(vals[q]);
                    a_hi[m][q] = hi;
                    a_lo[m][q] = tf32(vals[q] - f32::from_bits(hi));
                }
            }
            for n in 0..4 {
                let base = unsafe { ws.add((wn + n * 8 + g) * TC_STRIDE + kk + t) };
                let b = unsafe { [(*base).to_bits(), (*base.add(4)).to_bits()] };
                for m in 0..2 {
                    mma_tf32(&mut acc[m][n], a_lo[m], b);
                    mma_tf32(&mut acc[m][n], a_hi[m], b);
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
