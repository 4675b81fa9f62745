//! The small device module that plays Rust-CUDA's `cuda_std` role: thread and block indices,
//! barriers, warp shuffles, dynamic shared memory, read-only global loads and bf16 conversion.
//! Everything here is a thin, `#[inline(always)]` wrapper around one PTX instruction.

use core::arch::asm;
use core::arch::nvptx;

/// Threads per warp on every NVIDIA GPU this project targets.
pub const WARP: u32 = 32;

// Dynamic shared memory: one module-scope extern array whose size the host sets per launch
// (`shared_mem_bytes`). Kernels carve it up themselves; see [`dynamic_shared`].
core::arch::global_asm!(".extern .shared .align 16 .b8 qwen_dynamic_smem[];");

#[inline(always)]
pub fn thread_x() -> u32 {
    unsafe { nvptx::_thread_idx_x() }
}
#[inline(always)]
pub fn block_x() -> u32 {
    unsafe { nvptx::_block_idx_x() }
}
#[inline(always)]
pub fn block_y() -> u32 {
    unsafe { nvptx::_block_idx_y() }
}
#[inline(always)]
pub fn block_z() -> u32 {
    unsafe { nvptx::_block_idx_z() }
}
#[inline(always)]
pub fn grid_dim_y() -> u32 {
    unsafe { nvptx::_grid_dim_y() }
}
#[inline(always)]
pub fn grid_dim_z() -> u32 {
    unsafe { nvptx::_grid_dim_z() }
}
#[inline(always)]
pub fn block_dim_x() -> u32 {
    unsafe { nvptx::_block_dim_x() }
}
#[inline(always)]
pub fn grid_dim_x() -> u32 {
    unsafe { nvptx::_grid_dim_x() }
}
#[inline(always)]
pub fn lane() -> u32 {
    thread_x() % WARP
}
#[inline(always)]
pub fn warp_id() -> u32 {
    thread_x() / WARP
}

/// `__syncthreads()`: every thread of the block waits here, and shared-memory writes before it
/// are visible to every thread after it.
#[inline(always)]
pub fn sync_threads() {
    unsafe { nvptx::_syncthreads() }
}

/// `shfl.sync.bfly`: the value held by lane `lane ^ mask` (all 32 lanes must take part).
///
/// Deliberately *not* `pure`: a pure asm block may be sunk by LLVM into a branch that only some
/// lanes take (it once moved a whole warp reduction under `if lane() == 0`, which deadlocks a
/// full-mask shuffle). Without `pure` the shuffle stays where every lane executes it.
#[inline(always)]
pub fn shfl_xor(v: f32, mask: u32) -> f32 {
    let r: f32;
    unsafe {
        asm!("shfl.sync.bfly.b32 {r}, {v}, {m}, 0x1f, 0xffffffff;",
             r = out(reg32) r, v = in(reg32) v, m = in(reg32) mask,
             options(nostack, preserves_flags));
    }
    r
}

/// Sum over the 32 lanes of a warp; every lane gets the total (butterfly reduction).
#[inline(always)]
pub fn warp_sum(mut v: f32) -> f32 {
    let mut m = 16;
    while m > 0 {
        v += shfl_xor(v, m);
        m >>= 1;
    }
    v
}

/// [`warp_sum`] of `N` values at once, their shuffles interleaved so that `N` are in flight at
/// each of the five steps instead of one.
#[inline(always)]
pub fn warp_sum_n<const N: usize>(mut v: [f32; N]) -> [f32; N] {
    let mut m = 16;
    while m > 0 {
        for x in v.iter_mut() {
            *x += shfl_xor(*x, m);
        }
        m >>= 1;
    }
    v
}

/// Maximum over the 32 lanes of a warp; every lane gets it.
#[inline(always)]
pub fn warp_max(mut v: f32) -> f32 {
    let mut m = 16;
    while m > 0 {
        v = v.max(shfl_xor(v, m));
        m >>= 1;
    }
    v
}

/// Base of the launch's dynamic shared memory, as a generic pointer to `T`.
/// The caller must launch with at least as many `shared_mem_bytes` as it touches.
#[inline(always)]
pub fn dynamic_shared<T>() -> *mut T {
    let p: u64;
    unsafe {
        asm!("cvta.shared.u64 {p}, qwen_dynamic_smem;", p = out(reg64) p,
             options(pure, nomem, nostack, preserves_flags));
    }
    p as *mut T
}

/// Base of the launch's dynamic shared memory as a shared-window address (what `ld.shared`,
/// `st.shared` and `cp.async` take).
#[inline(always)]
pub fn dynamic_shared_addr() -> u32 {
    let a: u32;
    unsafe {
        asm!("mov.u32 {a}, qwen_dynamic_smem;", a = out(reg32) a, options(pure, nomem, nostack, preserves_flags));
    }
    a
}

/// `ld.shared.u32` at shared-window address `a`.
#[inline(always)]
pub unsafe fn load_shared_u32(a: u32) -> u32 {
    let v: u32;
    unsafe {
        asm!("ld.shared.u32 {v}, [{a}];", v = out(reg32) v, a = in(reg32) a, options(readonly, nostack, preserves_flags));
    }
    v
}

/// `ld.shared.f32` at shared-window address `a`.
#[inline(always)]
pub unsafe fn load_shared_f32(a: u32) -> f32 {
    let v: f32;
    unsafe {
        asm!("ld.shared.f32 {v}, [{a}];", v = out(reg32) v, a = in(reg32) a, options(readonly, nostack, preserves_flags));
    }
    v
}

/// `ld.shared.v4.f32` at shared-window address `a` (16-byte aligned).
#[inline(always)]
pub unsafe fn load_shared_v4_f32(a: u32) -> [f32; 4] {
    let (x, y, z, w): (f32, f32, f32, f32);
    unsafe {
        asm!("ld.shared.v4.f32 {{{x}, {y}, {z}, {w}}}, [{a}];", x = out(reg32) x, y = out(reg32) y, z = out(reg32) z,
             w = out(reg32) w, a = in(reg32) a, options(readonly, nostack, preserves_flags));
    }
    [x, y, z, w]
}

/// `ld.shared.v2.f32` at shared-window address `a` (8-byte aligned).
#[inline(always)]
pub unsafe fn load_shared_v2_f32(a: u32) -> [f32; 2] {
    let (x, y): (f32, f32);
    unsafe {
        asm!("ld.shared.v2.f32 {{{x}, {y}}}, [{a}];", x = out(reg32) x, y = out(reg32) y, a = in(reg32) a,
             options(readonly, nostack, preserves_flags));
    }
    [x, y]
}

/// `v`, through an asm block the compiler must run where it stands (no `pure`): values derived
/// from it are worked out there, not hoisted out of a loop into registers kept across it.
#[inline(always)]
pub fn opaque_usize(v: usize) -> usize {
    let r: usize;
    unsafe { asm!("mov.b64 {r}, {v};", r = out(reg64) r, v = in(reg64) v, options(nomem, nostack, preserves_flags)) };
    r
}

/// `st.shared.u32` at shared-window address `a`.
#[inline(always)]
pub unsafe fn store_shared_u32(a: u32, v: u32) {
    unsafe {
        asm!("st.shared.u32 [{a}], {v};", a = in(reg32) a, v = in(reg32) v, options(nostack, preserves_flags));
    }
}

/// `st.shared.v2.u32` at shared-window address `a` (8-byte aligned).
#[inline(always)]
pub unsafe fn store_shared_v2_u32(a: u32, v: [u32; 2]) {
    unsafe {
        asm!("st.shared.v2.u32 [{a}], {{{x}, {y}}};", a = in(reg32) a, x = in(reg32) v[0], y = in(reg32) v[1],
             options(nostack, preserves_flags));
    }
}

/// `ldmatrix.sync.aligned.m8n8.x4.shared.b16` (sm_75+): four 8 × 8 matrices of 16-bit values, the
/// rows of matrix `m` at the shared-window addresses that lanes `8m..8m+8` pass (16-byte aligned,
/// 8 values each). Lane `l` gets in register `m` the pair at row `l / 4`, columns `2(l mod 4)` and
/// `2(l mod 4) + 1` of matrix `m` (the lower column in the low half): the layout of an `mma` B
/// fragment when the rows are its `n` and the columns its `k`. Every lane of the warp must call it.
#[inline(always)]
pub unsafe fn ldmatrix_x4(a: u32) -> [u32; 4] {
    let (x, y, z, w): (u32, u32, u32, u32);
    unsafe {
        asm!("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {{{x}, {y}, {z}, {w}}}, [{a}];",
             x = out(reg32) x, y = out(reg32) y, z = out(reg32) z, w = out(reg32) w, a = in(reg32) a,
             options(readonly, nostack, preserves_flags));
    }
    [x, y, z, w]
}

/// [`ldmatrix_x4`] transposed (`.trans`): lane `l` gets in register `m` the values at rows
/// `2(l mod 4)` and `2(l mod 4) + 1` of column `l / 4` of matrix `m`: the layout of an `mma` B
/// fragment when the rows are its `k` and the columns its `n`.
#[inline(always)]
pub unsafe fn ldmatrix_x4_trans(a: u32) -> [u32; 4] {
    let (x, y, z, w): (u32, u32, u32, u32);
    unsafe {
        asm!("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {{{x}, {y}, {z}, {w}}}, [{a}];",
             x = out(reg32) x, y = out(reg32) y, z = out(reg32) z, w = out(reg32) w, a = in(reg32) a,
             options(readonly, nostack, preserves_flags));
    }
    [x, y, z, w]
}

/// `cp.async.cg.shared.global` (sm_80+): copies 16 bytes from global `src` to shared-window
/// address `dst` (both 16-byte aligned) without going through registers; with `bytes = 0` it
/// reads nothing and writes 16 zero bytes. Completes at [`cp_async_wait`] after
/// [`cp_async_commit`].
#[inline(always)]
pub unsafe fn cp_async_16(dst: u32, src: *const u8, bytes: u32) {
    unsafe {
        asm!("cp.async.cg.shared.global [{d}], [{s}], 16, {n};", d = in(reg32) dst, s = in(reg64) src,
             n = in(reg32) bytes, options(nostack, preserves_flags));
    }
}

/// `cp.async.commit_group`: the copies this thread issued since the last commit form one group.
#[inline(always)]
pub fn cp_async_commit() {
    unsafe { asm!("cp.async.commit_group;", options(nostack, preserves_flags)) }
}

/// `cp.async.wait_group N`: waits until at most `N` of this thread's committed groups are still
/// in flight. Other threads' copies are visible only after a barrier that follows.
#[inline(always)]
pub fn cp_async_wait<const N: u32>() {
    unsafe { asm!("cp.async.wait_group {n};", n = const N, options(nostack, preserves_flags)) }
}

/// Sum of `v` over the whole block (blockDim.x a multiple of 32, at most 1024), using
/// `WARP` floats of dynamic shared memory starting at `scratch`. Every thread gets the total.
/// Contains two barriers: every thread of the block must call it.
#[inline(always)]
pub unsafe fn block_sum(v: f32, scratch: *mut f32) -> f32 {
    let warps = block_dim_x() / WARP;
    let s = warp_sum(v);
    unsafe {
        if lane() == 0 {
            *scratch.add(warp_id() as usize) = s;
        }
        sync_threads();
        let mut t = if lane() < warps { *scratch.add(lane() as usize) } else { 0.0 };
        t = warp_sum(t);
        sync_threads(); // scratch may be reused right after this call
        t
    }
}

/// `ld.global.nc`: a load through the read-only (texture) path, for data that no thread of the
/// launch writes (weights).
#[inline(always)]
pub unsafe fn load_nc_u32(p: *const u32) -> u32 {
    let r: u32;
    unsafe {
        asm!("ld.global.nc.u32 {r}, [{p}];", r = out(reg32) r, p = in(reg64) p,
             options(pure, readonly, nostack, preserves_flags));
    }
    r
}

/// bf16 bits → f32: bf16 is the upper half of an IEEE-754 binary32.
#[inline(always)]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// IEEE round-to-nearest square root (`sqrt.rn.f32`); `core` has no `f32::sqrt` without `std`.
#[inline(always)]
pub fn sqrt(x: f32) -> f32 {
    let r: f32;
    unsafe {
        asm!("sqrt.rn.f32 {r}, {x};", r = out(reg32) r, x = in(reg32) x,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// `e^x` through the hardware `2^x` unit (`ex2.approx`, ~2 ulp): `e^x = 2^(x·log2 e)`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp2(x * core::f32::consts::LOG2_E)
}

/// `2^x` (`ex2.approx.f32`: relative error ~2⁻²²; `2^−∞ = 0`).
#[inline(always)]
pub fn exp2(y: f32) -> f32 {
    let r: f32;
    unsafe {
        asm!("ex2.approx.f32 {r}, {y};", r = out(reg32) r, y = in(reg32) y,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// 16-byte read-only load of data read once (`ld.global.nc.L1::no_allocate.v4.u32`): eight bf16
/// weights of a decode product, which stream through and are not kept in L1. `p` must be 16-byte
/// aligned. The sm_80 PTX (ISA 7.0, which lacks the qualifier) uses [`load_nc_v4`].
#[inline(always)]
pub unsafe fn load_stream_v4(p: *const u32) -> [u32; 4] {
    #[cfg(target_feature = "sm_90")]
    {
        let (a, b, c, d): (u32, u32, u32, u32);
        unsafe {
            asm!("ld.global.nc.L1::no_allocate.v4.u32 {{{a}, {b}, {c}, {d}}}, [{p}];",
                 a = out(reg32) a, b = out(reg32) b, c = out(reg32) c, d = out(reg32) d, p = in(reg64) p,
                 options(pure, readonly, nostack, preserves_flags));
        }
        [a, b, c, d]
    }
    #[cfg(not(target_feature = "sm_90"))]
    unsafe {
        load_nc_v4(p)
    }
}

/// 16-byte read-only load (`ld.global.nc.v4.u32`): eight bf16 weights at once. `p` must be
/// 16-byte aligned.
#[inline(always)]
pub unsafe fn load_nc_v4(p: *const u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    unsafe {
        asm!("ld.global.nc.v4.u32 {{{a}, {b}, {c}, {d}}}, [{p}];",
             a = out(reg32) a, b = out(reg32) b, c = out(reg32) c, d = out(reg32) d, p = in(reg64) p,
             options(pure, readonly, nostack, preserves_flags));
    }
    [a, b, c, d]
}

/// 16-byte load of four f32 (`ld.global.v4.f32`). `p` must be 16-byte aligned.
#[inline(always)]
pub unsafe fn load_v4_f32(p: *const f32) -> [f32; 4] {
    let (a, b, c, d): (f32, f32, f32, f32);
    unsafe {
        asm!("ld.global.v4.f32 {{{a}, {b}, {c}, {d}}}, [{p}];",
             a = out(reg32) a, b = out(reg32) b, c = out(reg32) c, d = out(reg32) d, p = in(reg64) p,
             options(pure, readonly, nostack, preserves_flags));
    }
    [a, b, c, d]
}

/// 16-byte store of four f32 (`st.global.v4.f32`). `p` must be 16-byte aligned.
#[inline(always)]
pub unsafe fn store_v4_f32(p: *mut f32, v: [f32; 4]) {
    unsafe {
        asm!("st.global.v4.f32 [{p}], {{{a}, {b}, {c}, {d}}};", p = in(reg64) p,
             a = in(reg32) v[0], b = in(reg32) v[1], c = in(reg32) v[2], d = in(reg32) v[3],
             options(nostack, preserves_flags));
    }
}

/// The two bf16 values packed in a little-endian `u32`: (element 2i, element 2i+1).
#[inline(always)]
pub fn bf16x2_to_f32(w: u32) -> (f32, f32) {
    (f32::from_bits(w << 16), f32::from_bits(w & 0xffff_0000))
}

/// `fence.acq_rel.gpu`: this thread's earlier writes become visible GPU-wide before its later
/// ones (CUDA's `__threadfence`).
#[inline(always)]
pub fn fence_gpu() {
    unsafe { asm!("fence.acq_rel.gpu;", options(nostack, preserves_flags)) }
}

/// The arrival step of a reduction over several blocks: every block, once its partial results
/// are written to global memory, counts itself in `*counter`; this returns true in the block
/// that arrives `expected`-th (the last), after setting the counter back to 0 for the next
/// launch. That block's threads may then read every block's partials (relaxed loads, as
/// [`load_relaxed_f32`]). `flag` is one `u32` of shared memory that no thread still reads.
/// Contains two barriers: every thread of the block must call it.
#[inline(always)]
pub unsafe fn last_block_to_arrive(counter: *mut u32, expected: u32, flag: *mut u32) -> bool {
    fence_gpu();
    sync_threads(); // every thread's partials are fenced, and it is done with shared memory
    if thread_x() == 0 {
        let last = unsafe { atomic_add_u32(counter, 1) } + 1 == expected;
        unsafe {
            if last {
                *counter = 0;
            }
            *flag = last as u32;
        }
    }
    sync_threads();
    let last = unsafe { *flag } != 0;
    if last {
        fence_gpu();
    }
    last
}

/// `atom.add` on a `u32` in global memory, GPU scope; returns the old value.
#[inline(always)]
pub unsafe fn atomic_add_u32(p: *mut u32, v: u32) -> u32 {
    let old: u32;
    unsafe {
        asm!("atom.acq_rel.gpu.global.add.u32 {o}, [{p}], {v};", o = out(reg32) old, p = in(reg64) p,
             v = in(reg32) v, options(nostack, preserves_flags));
    }
    old
}

/// `atom.max` on a `u64` in global memory, GPU scope.
#[inline(always)]
pub unsafe fn atomic_max_u64(p: *mut u64, v: u64) {
    unsafe {
        asm!("red.relaxed.gpu.global.max.u64 [{p}], {v};", p = in(reg64) p, v = in(reg64) v,
             options(nostack, preserves_flags));
    }
}

/// A load that sees other blocks' writes of this launch (`ld.relaxed.gpu`, never a stale L1 line).
#[inline(always)]
pub unsafe fn load_relaxed_f32(p: *const f32) -> f32 {
    let r: f32;
    unsafe {
        asm!("ld.relaxed.gpu.global.f32 {r}, [{p}];", r = out(reg32) r, p = in(reg64) p,
             options(nostack, preserves_flags));
    }
    r
}

/// As [`load_relaxed_f32`], for a `u64`.
#[inline(always)]
pub unsafe fn load_relaxed_u64(p: *const u64) -> u64 {
    let r: u64;
    unsafe {
        asm!("ld.relaxed.gpu.global.u64 {r}, [{p}];", r = out(reg64) r, p = in(reg64) p,
             options(nostack, preserves_flags));
    }
    r
}

/// `griddepcontrol.launch_dependents` (sm_90 and newer; nothing before): the next kernel on the
/// stream, where it was launched with programmatic dependent launch, may start once every block
/// of this one has executed this (or exited). See `host/src/cuda/launch.rs`.
#[inline(always)]
pub fn launch_dependents() {
    #[cfg(target_feature = "sm_90")]
    unsafe {
        asm!("griddepcontrol.launch_dependents;", options(nostack, preserves_flags))
    }
}

/// `griddepcontrol.wait` (sm_90 and newer; nothing before): waits until the kernels this one
/// depends on have finished and their writes are visible. A kernel launched with programmatic
/// dependent launch must call it before it reads or writes anything another kernel writes.
/// Not `nomem`: no memory access is moved across it.
#[inline(always)]
pub fn wait_for_previous_grid() {
    #[cfg(target_feature = "sm_90")]
    unsafe {
        asm!("griddepcontrol.wait;", options(nostack, preserves_flags))
    }
}

/// Two f32 → two bf16 rounded to nearest even, packed (`cvt.rn.bf16x2.f32`, sm_80+): `a` in the
/// low half, `b` in the high half.
#[inline(always)]
pub fn pack_bf16x2(a: f32, b: f32) -> u32 {
    let d: u32;
    unsafe {
        asm!("cvt.rn.bf16x2.f32 {d}, {b}, {a};", d = out(reg32) d, a = in(reg32) a, b = in(reg32) b,
                         options(pure, nomem, nostack, preserves_flags));
    }
    d
}

/// `(a, b) = hi + lo` with `hi`, `lo` packed bf16 pairs (as [`pack_bf16x2`]): `hi` holds each
/// value's top 8 significant bits, `lo` the next 8.
#[inline(always)]
pub fn split_bf16x2(a: f32, b: f32) -> (u32, u32) {
    let hi = pack_bf16x2(a, b);
    let (ha, hb) = (f32::from_bits(hi << 16), f32::from_bits(hi & 0xffff_0000));
    (hi, pack_bf16x2(a - ha, b - hb))
}

/// `d = a·b + d` for one 16 × 8 × 16 bf16 tile (`mma.sync.aligned.m16n8k16.row.col`), f32
/// accumulate. Each register holds two bf16, the lower column (or k) in the low half. Fragments,
/// with `g = lane / 4`, `t = lane mod 4`: `a = [A(g, 2t..), A(g+8, 2t..), A(g, 2t+8..), A(g+8, 2t+8..)]`,
/// `b = [B(2t.., g), B(2t+8.., g)]`, `d = [D(g, 2t), D(g, 2t+1), D(g+8, 2t), D(g+8, 2t+1)]`.
#[inline(always)]
pub fn mma_bf16(d: &mut [f32; 4], a: [u32; 4], b: [u32; 2]) {
    unsafe {
        asm!(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d0}, {d1}, {d2}, {d3}}}, {{{a0}, {a1}, {a2}, {a3}}}, {{{b0}, {b1}}}, {{{d0}, {d1}, {d2}, {d3}}};",
            d0 = inout(reg32) d[0], d1 = inout(reg32) d[1], d2 = inout(reg32) d[2], d3 = inout(reg32) d[3],
            a0 = in(reg32) a[0], a1 = in(reg32) a[1], a2 = in(reg32) a[2], a3 = in(reg32) a[3],
            b0 = in(reg32) b[0], b1 = in(reg32) b[1],
            options(pure, nomem, nostack, preserves_flags)
        );
    }
}

/// `fence.proxy.async.shared::cta`: this thread's earlier shared-memory writes (stores and
/// completed `cp.async` copies) become visible to the async proxy, through which `wgmma` reads its
/// shared-memory operand. Needed before the barrier that hands such a tile to `wgmma`.
#[cfg(target_feature = "sm_90a")]
#[inline(always)]
pub fn fence_proxy_async_shared() {
    unsafe { asm!("fence.proxy.async.shared::cta;", options(nostack, preserves_flags)) }
}

/// A `wgmma` shared-memory matrix descriptor (sm_90a) for a K-major bf16 operand in the 128-byte
/// swizzle layout: rows of 64 bf16 of K, 128 bytes apart, the 16-byte chunk `c` of row `r` at
/// chunk `c ^ (r mod 8)`, the operand 1,024-byte aligned; `addr` is its start plus the byte offset
/// of the first K column wanted (a multiple of 32). Bits: start / 16 in 0–13, leading byte offset
/// 1 (unused), stride byte offset (8 rows: 1,024) / 16 in 32–45, swizzle mode 1 (128 bytes) in
/// 62–63.
#[cfg(target_feature = "sm_90a")]
#[inline(always)]
pub fn wgmma_desc_sw128(addr: u32) -> u64 {
    (((addr & 0x3ffff) >> 4) as u64) | (1u64 << 16) | ((1024u64 >> 4) << 32) | (1u64 << 62)
}

/// `d += a·b` for a 64 × 128 tile and 32 of K, on the tensor cores of the whole warpgroup
/// (`wgmma.mma_async.m64n128k16.f32.bf16.bf16`, sm_90a; every thread of the 4 aligned warps must
/// call it), waiting for the result. Each K half `h` is two products with the same `b[h]`: first
/// `a[h][0]`, then `a[h][1]` (the low and high bf16 halves of split activations).
///
/// `a[h][i]`: this warp's 16 rows of A (warp `w` of the group rows `16w ..`), k `16h .. 16h + 16`,
/// as [`mma_bf16`]'s A fragment. `b[h]`: descriptor ([`wgmma_desc`]) of B's 128 rows (N) × 16 k,
/// K-major in shared memory. `d`, as `mma_bf16`'s D fragment for each of the 16 column groups
/// `j` of 8: `d[4j..4j + 4] = [D(g, 8j + 2t), D(g, 8j + 2t + 1), D(g + 8, 8j + 2t), D(g + 8, 8j + 2t + 1)]`
/// (rows relative to the warp's 16). The asm block fences the registers (`wgmma.fence`) before
/// the first product and waits for all four (`wgmma.wait_group 0`) before it returns, so `d` and
/// `a` are never touched while a product is in flight.
#[cfg(target_feature = "sm_90a")]
#[inline(always)]
pub unsafe fn wgmma_m64n128k32(d: &mut [f32; 64], a: [[[u32; 4]; 2]; 2], b: [u64; 2]) {
    unsafe {
        asm!(
            "{{",
            ".reg .pred p;",
            "setp.ne.b32 p, {one}, 0;",
            "wgmma.fence.sync.aligned;",
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{{d0}, {d1}, {d2}, {d3}, {d4}, {d5}, {d6}, {d7}, {d8}, {d9}, {d10}, {d11}, {d12}, {d13}, {d14}, {d15}, {d16}, {d17}, {d18}, {d19}, {d20}, {d21}, {d22}, {d23}, {d24}, {d25}, {d26}, {d27}, {d28}, {d29}, {d30}, {d31}, {d32}, {d33}, {d34}, {d35}, {d36}, {d37}, {d38}, {d39}, {d40}, {d41}, {d42}, {d43}, {d44}, {d45}, {d46}, {d47}, {d48}, {d49}, {d50}, {d51}, {d52}, {d53}, {d54}, {d55}, {d56}, {d57}, {d58}, {d59}, {d60}, {d61}, {d62}, {d63}}}, {{{a000}, {a001}, {a002}, {a003}}}, {b0}, p, 1, 1, 0;",
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{{d0}, {d1}, {d2}, {d3}, {d4}, {d5}, {d6}, {d7}, {d8}, {d9}, {d10}, {d11}, {d12}, {d13}, {d14}, {d15}, {d16}, {d17}, {d18}, {d19}, {d20}, {d21}, {d22}, {d23}, {d24}, {d25}, {d26}, {d27}, {d28}, {d29}, {d30}, {d31}, {d32}, {d33}, {d34}, {d35}, {d36}, {d37}, {d38}, {d39}, {d40}, {d41}, {d42}, {d43}, {d44}, {d45}, {d46}, {d47}, {d48}, {d49}, {d50}, {d51}, {d52}, {d53}, {d54}, {d55}, {d56}, {d57}, {d58}, {d59}, {d60}, {d61}, {d62}, {d63}}}, {{{a010}, {a011}, {a012}, {a013}}}, {b0}, p, 1, 1, 0;",
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{{d0}, {d1}, {d2}, {d3}, {d4}, {d5}, {d6}, {d7}, {d8}, {d9}, {d10}, {d11}, {d12}, {d13}, {d14}, {d15}, {d16}, {d17}, {d18}, {d19}, {d20}, {d21}, {d22}, {d23}, {d24}, {d25}, {d26}, {d27}, {d28}, {d29}, {d30}, {d31}, {d32}, {d33}, {d34}, {d35}, {d36}, {d37}, {d38}, {d39}, {d40}, {d41}, {d42}, {d43}, {d44}, {d45}, {d46}, {d47}, {d48}, {d49}, {d50}, {d51}, {d52}, {d53}, {d54}, {d55}, {d56}, {d57}, {d58}, {d59}, {d60}, {d61}, {d62}, {d63}}}, {{{a100}, {a101}, {a102}, {a103}}}, {b1}, p, 1, 1, 0;",
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{{d0}, {d1}, {d2}, {d3}, {d4}, {d5}, {d6}, {d7}, {d8}, {d9}, {d10}, {d11}, {d12}, {d13}, {d14}, {d15}, {d16}, {d17}, {d18}, {d19}, {d20}, {d21}, {d22}, {d23}, {d24}, {d25}, {d26}, {d27}, {d28}, {d29}, {d30}, {d31}, {d32}, {d33}, {d34}, {d35}, {d36}, {d37}, {d38}, {d39}, {d40}, {d41}, {d42}, {d43}, {d44}, {d45}, {d46}, {d47}, {d48}, {d49}, {d50}, {d51}, {d52}, {d53}, {d54}, {d55}, {d56}, {d57}, {d58}, {d59}, {d60}, {d61}, {d62}, {d63}}}, {{{a110}, {a111}, {a112}, {a113}}}, {b1}, p, 1, 1, 0;",
            "wgmma.commit_group.sync.aligned;",
            "wgmma.wait_group.sync.aligned 0;",
            "}}",
            d0 = inout(reg32) d[0], d1 = inout(reg32) d[1], d2 = inout(reg32) d[2], d3 = inout(reg32) d[3],
            d4 = inout(reg32) d[4], d5 = inout(reg32) d[5], d6 = inout(reg32) d[6], d7 = inout(reg32) d[7],
            d8 = inout(reg32) d[8], d9 = inout(reg32) d[9], d10 = inout(reg32) d[10], d11 = inout(reg32) d[11],
            d12 = inout(reg32) d[12], d13 = inout(reg32) d[13], d14 = inout(reg32) d[14], d15 = inout(reg32) d[15],
            d16 = inout(reg32) d[16], d17 = inout(reg32) d[17], d18 = inout(reg32) d[18], d19 = inout(reg32) d[19],
            d20 = inout(reg32) d[20], d21 = inout(reg32) d[21], d22 = inout(reg32) d[22], d23 = inout(reg32) d[23],
            d24 = inout(reg32) d[24], d25 = inout(reg32) d[25], d26 = inout(reg32) d[26], d27 = inout(reg32) d[27],
            d28 = inout(reg32) d[28], d29 = inout(reg32) d[29], d30 = inout(reg32) d[30], d31 = inout(reg32) d[31],
            d32 = inout(reg32) d[32], d33 = inout(reg32) d[33], d34 = inout(reg32) d[34], d35 = inout(reg32) d[35],
            d36 = inout(reg32) d[36], d37 = inout(reg32) d[37], d38 = inout(reg32) d[38], d39 = inout(reg32) d[39],
            d40 = inout(reg32) d[40], d41 = inout(reg32) d[41], d42 = inout(reg32) d[42], d43 = inout(reg32) d[43],
            d44 = inout(reg32) d[44], d45 = inout(reg32) d[45], d46 = inout(reg32) d[46], d47 = inout(reg32) d[47],
            d48 = inout(reg32) d[48], d49 = inout(reg32) d[49], d50 = inout(reg32) d[50], d51 = inout(reg32) d[51],
            d52 = inout(reg32) d[52], d53 = inout(reg32) d[53], d54 = inout(reg32) d[54], d55 = inout(reg32) d[55],
            d56 = inout(reg32) d[56], d57 = inout(reg32) d[57], d58 = inout(reg32) d[58], d59 = inout(reg32) d[59],
            d60 = inout(reg32) d[60], d61 = inout(reg32) d[61], d62 = inout(reg32) d[62], d63 = inout(reg32) d[63],
            a000 = in(reg32) a[0][0][0], a001 = in(reg32) a[0][0][1], a002 = in(reg32) a[0][0][2], a003 = in(reg32) a[0][0][3],
            a010 = in(reg32) a[0][1][0], a011 = in(reg32) a[0][1][1], a012 = in(reg32) a[0][1][2], a013 = in(reg32) a[0][1][3],
            a100 = in(reg32) a[1][0][0], a101 = in(reg32) a[1][0][1], a102 = in(reg32) a[1][0][2], a103 = in(reg32) a[1][0][3],
            a110 = in(reg32) a[1][1][0], a111 = in(reg32) a[1][1][1], a112 = in(reg32) a[1][1][2], a113 = in(reg32) a[1][1][3],
            b0 = in(reg64) b[0], b1 = in(reg64) b[1], one = in(reg32) 1u32,
            options(nostack, preserves_flags)
        );
    }
}

/// `barrier.cluster.arrive` (sm_90): this thread's arrival at the thread-block cluster's barrier,
/// with release semantics (its earlier writes, distributed shared memory included, are visible to
/// every thread of the cluster after that thread's [`cluster_wait`]). Every thread of every block
/// of the cluster must arrive before any wait returns.
#[cfg(target_feature = "sm_90")]
#[inline(always)]
pub fn cluster_arrive() {
    unsafe { asm!("barrier.cluster.arrive;", options(nostack, preserves_flags)) }
}

/// `barrier.cluster.wait` (sm_90): waits until every thread of the cluster has made its
/// [`cluster_arrive`], with acquire semantics.
#[cfg(target_feature = "sm_90")]
#[inline(always)]
pub fn cluster_wait() {
    unsafe { asm!("barrier.cluster.wait;", options(nostack, preserves_flags)) }
}

/// [`cluster_arrive`] then [`cluster_wait`]: a barrier over the whole thread-block cluster.
#[cfg(target_feature = "sm_90")]
#[inline(always)]
pub fn cluster_sync() {
    cluster_arrive();
    cluster_wait();
}

/// `mapa.shared::cluster` (sm_90): the distributed-shared-memory address of shared-window
/// address `a` in block `rank` of this block's cluster (what [`store_cluster_f32`] takes).
#[cfg(target_feature = "sm_90")]
#[inline(always)]
pub fn cluster_shared_addr(a: u32, rank: u32) -> u32 {
    let r: u32;
    unsafe {
        asm!("mapa.shared::cluster.u32 {r}, {a}, {k};", r = out(reg32) r, a = in(reg32) a, k = in(reg32) rank,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// `st.shared::cluster.f32`: a store into the shared memory of a block of this cluster, at an
/// address from [`cluster_shared_addr`]. Visible to that block's threads after a cluster barrier.
#[cfg(target_feature = "sm_90")]
#[inline(always)]
pub unsafe fn store_cluster_f32(a: u32, v: f32) {
    unsafe {
        asm!("st.shared::cluster.f32 [{a}], {v};", a = in(reg32) a, v = in(reg32) v, options(nostack, preserves_flags));
    }
}
