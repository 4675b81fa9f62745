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
//! CPU twin: `host::cpu::ops::rmsnorm`.

use crate::device::*;

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn rmsnorm_f32_bf16(
    y: *mut f32,
    x: *const f32,
    w: *const u16,
    n: u32,
    eps: f32,
) {
    let row = block_x() as usize * n as usize;
    let (x, y) = unsafe { (x.add(row), y.add(row)) };
    let mut ss = 0.0f32;
    let mut i = thread_x();
    while i < n {
        let v = unsafe { *x.add(i as usize) };
        ss += v * v;
        i += block_dim_x();
    }
    let total = unsafe { block_sum(ss, dynamic_shared::<f32>()) };
    let scale = 1.0 / sqrt(total / n as f32 + eps);
    let mut i = thread_x();
    while i < n {
        unsafe {
            let wi = bf16_to_f32(*w.add(i as usize));
            *y.add(i as usize) = *x.add(i as usize) * scale * wi;
        }
        i += block_dim_x();
    }
}
