//! SwiGLU activation.
//!
//! Math: `out[i] = silu(gate[i]) · up[i]`, `silu(x) = x / (1 + e^{−x})`, for `i < n`.
//! Layout: three f32 arrays of `n` (`[tokens, intermediate]`); `out` may be `gate` itself only
//! because each element is read and written by the same thread.
//! Launch: grid `(ceil(n / 256), 1, 1)`, block `(256, 1, 1)`. CPU twin: `host::cpu::ops::swiglu`.

use crate::device::*;

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn swiglu_f32(out: *mut f32, gate: *const f32, up: *const f32, n: u32) {
    let i = (block_x() * block_dim_x() + thread_x()) as usize;
    if i < n as usize {
        unsafe {
            let g = *gate.add(i);
            *out.add(i) = g / (1.0 + exp(-g)) * *up.add(i);
        }
    }
}
