//! Token embedding gather.
//!
//! Math: `out[t, i] = table[ids[t], i]` for `t < tokens`, `i < hidden` (bf16 → f32).
//! An id outside the vocabulary writes NaN, so the error shows instead of reading out of bounds
//! (the host validates ids first).
//!
//! Layout: `table` is `[vocab, hidden]` bf16 bits, `out` is `[tokens, hidden]` f32, `ids` `[tokens]`.
//! Launch: grid `(tokens, 1, 1)`, block `(256, 1, 1)`. CPU twin: the gather at the top of
//! `CpuEngine::forward_tokens`.

use crate::device::*;

#[unsafe(no_mangle)]
pub unsafe extern "ptx-kernel" fn embedding_bf16(out: *mut f32, table: *const u16, ids: *const u32, hidden: u32, vocab: u32) {
    let t = block_x() as usize;
    let h = hidden as usize;
    let id = unsafe { *ids.add(t) };
    let mut i = thread_x() as usize;
    while i < h {
        unsafe {
            *out.add(t * h + i) = if id < vocab { bf16_to_f32(*table.add(id as usize * h + i)) } else { f32::NAN };
        }
        i += block_dim_x() as usize;
    }
}
