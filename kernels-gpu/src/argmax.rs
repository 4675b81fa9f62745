//! Greedy sampling on the GPU: the index of the largest logit.
//!
//! Math: `out = argmax_i x[i]` over `i < n`, the smallest index on ties (NaNs never win).
//! Launch: grid `(1, 1, 1)`, block `(1024, 1, 1)`, dynamic shared memory `1024 · 8` bytes: each
//! thread scans a strided slice, then a tree reduction over (value, index) pairs.
//! CPU twin: `host::cpu::ops::argmax`.

use crate::device::*;

const THREADS: usize = 1024;

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn argmax_f32(out: *mut u32, x: *const f32, n: u32) {
    let tid = thread_x() as usize;
    let (mut best_v, mut best_i) = (f32::NEG_INFINITY, u32::MAX);
    let mut i = tid;
    while i < n as usize {
        let v = unsafe { *x.add(i) };
        if v > best_v || (best_i == u32::MAX && v == best_v) {
            best_v = v;
            best_i = i as u32;
        }
        i += THREADS;
    }
    let vals = dynamic_shared::<f32>();
    let idxs = unsafe { vals.add(THREADS) } as *mut u32;
    unsafe {
        *vals.add(tid) = best_v;
        *idxs.add(tid) = best_i;
    }
    sync_threads();
    let mut stride = THREADS / 2;
    while stride > 0 {
        if tid < stride {
            unsafe {
                let (v2, i2) = (*vals.add(tid + stride), *idxs.add(tid + stride));
                let (v1, i1) = (*vals.add(tid), *idxs.add(tid));
                if v2 > v1 || (v2 == v1 && i2 < i1) {
                    *vals.add(tid) = v2;
                    *idxs.add(tid) = i2;
                }
            }
        }
        sync_threads();
        stride /= 2;
    }
    if tid == 0 {
        unsafe { *out = *idxs };
    }
}
