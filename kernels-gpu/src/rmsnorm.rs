//! RMSNorm.
//!
//! Math, for each row `x` of length `n`:
//! `y[i] = x[i] / sqrt(mean(x²) + eps) * w[i]`
//! (Qwen2 applies it before attention, before the MLP and once before the LM head.)
//!
//! Layout: `x` and `y` are `[rows, n]` row-major f32; `w` is `[n]` bf16 bits. `y` never aliases `x`.
//!
//! Launch: grid `(rows, 1, 1)`, block `(256, 1, 1)` (any multiple of 32 up to 1024),
//! dynamic shared memory `32 * 4` bytes (one partial sum per warp).
//!
//! Launched with programmatic dependent launch where the device has it (`host/src/cuda/launch.rs`):
//! it waits for the kernel before it (`griddepcontrol.wait`) after loading its weights.
//!
//! Rows of up to [`HELD`] elements a thread are read once: each thread loads its elements and
//! their weights before the block's sum, so the kernel waits for memory once (at 4.6–5.4 µs a
//! launch on an H100 the two passes over `x` were mostly two round trips); longer rows take a
//! second pass.
//!
//! CPU twin: `host::cpu::ops::rmsnorm`.

use crate::device::*;

/// Elements a thread keeps in registers: rows of up to `HELD · blockDim.x` (1,024 at 256 threads:
/// the 0.5B's 896). Few, so that the registers still let 8 blocks share an SM (a 1,024-row launch
/// in one wave on 132 SMs).
const HELD: usize = 4;

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn rmsnorm_f32_bf16(
    y: *mut f32,
    x: *const f32,
    w: *const u16,
    n: u32,
    eps: f32,
) {
    let n = n as usize;
    let row = block_x() as usize * n;
    let (x, y) = unsafe { (x.add(row), y.add(row)) };
    let (tid, threads) = (thread_x() as usize, block_dim_x() as usize);
    let at = |k: usize| tid + k * threads;
    if n <= HELD * threads {
        // the weights (no kernel writes them) before the wait, the activations after
        let ws: [u16; HELD] = core::array::from_fn(|k| if at(k) < n { unsafe { *w.add(at(k)) } } else { 0 });
        wait_for_previous_grid();
        let xs: [f32; HELD] = core::array::from_fn(|k| if at(k) < n { unsafe { *x.add(at(k)) } } else { 0.0 });
        let mut ss = 0.0f32;
        for v in &xs {
            ss += v * v;
        }
        let total = unsafe { block_sum(ss, dynamic_shared::<f32>()) };
        let scale = 1.0 / sqrt(total / n as f32 + eps);
        for k in 0..HELD {
            if at(k) < n {
                unsafe { *y.add(at(k)) = xs[k] * scale * bf16_to_f32(ws[k]) };
            }
        }
        return;
    }
    wait_for_previous_grid();
    let mut ss = 0.0f32;
    let mut i = tid;
    while i < n {
        let v = unsafe { *x.add(i) };
        ss += v * v;
        i += threads;
    }
    let total = unsafe { block_sum(ss, dynamic_shared::<f32>()) };
    let scale = 1.0 / sqrt(total / n as f32 + eps);
    let mut i = tid;
    while i < n {
        unsafe { *y.add(i) = *x.add(i) * scale * bf16_to_f32(*w.add(i)) };
        i += threads;
    }
}
