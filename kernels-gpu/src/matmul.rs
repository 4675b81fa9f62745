//! Matrix-vector / matrix-matrix product with bf16 weights and f32 accumulation.
//!
//! Math: `out[t, r] = (accumulate ? out[t, r] : 0) + bias[r] + Σ_c x[t, c] · w[r, c]`
//! for `t < tokens`, `r < rows`; `bias` may be null. With `accumulate` the product is added to
//! what `out` holds (the residual stream), which is how the residual adds are fused. `out` must
//! not alias `x`.
//!
//! Layout: `w` is `[rows, cols]` bf16 bits, row-major; `x` is `[tokens, cols]` f32; `out` is
//! `[tokens, rows]` f32.
//!
//! Launch: grid `(ceil(rows / 8), 1, 1)`, block `(256, 1, 1)`: one warp per output row. When
//! `cols % 8 == 0` each lane reads the row in 16-byte chunks (8 weights, `ld.global.nc.v4`), four
//! chunks in flight at a time, the warp covering 1024 columns per step; otherwise it falls back to
//! one element per lane.
//! CPU twin: `host::cpu::ops::matmul`.

use crate::device::*;

pub const ROWS_PER_BLOCK: u32 = 8;

/// `Σ_{k<8} w[k]·x[k]` for eight bf16 weights packed in `wv` and eight f32 at `x` (16-byte aligned).
#[inline(always)]
unsafe fn dot8(wv: &[u32; 4], x: *const f32) -> f32 {
    let (x0, x1) = unsafe { (load_v4_f32(x), load_v4_f32(x.add(4))) };
    let xs = [x0[0], x0[1], x0[2], x0[3], x1[0], x1[1], x1[2], x1[3]];
    let mut acc = 0.0;
    for k in 0..4 {
        let (lo, hi) = bf16x2_to_f32(wv[k]);
        acc += lo * xs[2 * k] + hi * xs[2 * k + 1];
    }
    acc
}

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn matmul_bf16(
    out: *mut f32,
    x: *const f32,
    w: *const u16,
    bias: *const f32,
    rows: u32,
    cols: u32,
    tokens: u32,
    accumulate: u32,
) {
    let r = block_x() * ROWS_PER_BLOCK + warp_id();
    if r >= rows {
        return; // the whole warp leaves together, so the shuffles below stay full-warp
    }
    let (cols, rows_us) = (cols as usize, rows as usize);
    let wrow = unsafe { w.add(r as usize * cols) };
    let lane = lane() as usize;
    for t in 0..tokens as usize {
        let xr = unsafe { x.add(t * cols) };
        let mut acc = 0.0f32;
        if cols % 8 == 0 {
            // Four 16-byte weight loads in flight per lane before the first use: one warp per row
            // leaves too few bytes in flight per SM otherwise.
            let mut c = lane * 8;
            while c + 3 * 256 < cols {
                unsafe {
                    let w4 = [
                        load_nc_v4(wrow.add(c) as *const u32),
                        load_nc_v4(wrow.add(c + 256) as *const u32),
                        load_nc_v4(wrow.add(c + 512) as *const u32),
                        load_nc_v4(wrow.add(c + 768) as *const u32),
                    ];
                    for (u, wv) in w4.iter().enumerate() {
                        acc += dot8(wv, xr.add(c + u * 256));
                    }
                }
                c += 1024;
            }
            while c < cols {
                unsafe { acc += dot8(&load_nc_v4(wrow.add(c) as *const u32), xr.add(c)) };
                c += 256;
            }
        } else {
            let mut c = lane;
            while c < cols {
                unsafe { acc += bf16_to_f32(*wrow.add(c)) * *xr.add(c) };
                c += 32;
            }
        }
        let acc = warp_sum(acc);
        if lane == 0 {
            unsafe {
                let o = out.add(t * rows_us + r as usize);
                let mut v = acc;
                if !bias.is_null() {
                    v += *bias.add(r as usize);
                }
                if accumulate != 0 {
                    v += *o;
                }
                *o = v;
            }
        }
    }
}
