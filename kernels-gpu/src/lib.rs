//! qwen-rs GPU kernels, written in `#![no_std]` Rust and compiled to PTX by rustc's own
//! `nvptx64-nvidia-cuda` target (see the root `build.rs`, which plays `cuda_builder`'s role).
//!
//! One kernel family per file. Every kernel is an `extern "ptx-kernel"` function with a
//! `#[unsafe(no_mangle)]` name that the host (`host/src/cuda/`) looks up in the module.
//! Each kernel's doc comment gives the math, the memory layout and the launch shape; its CPU twin
//! lives in the reference engine (`host/src/cpu/`), and a GPU test compares the two.
//!
//! Conventions shared by all kernels:
//! - activations are `f32`, weights are `bf16` stored as raw `u16` bits (see [`device::bf16_to_f32`]);
//! - matrices are row-major; a weight `W` of shape `[rows, cols]` maps `cols` inputs to `rows` outputs;
//! - every length is passed explicitly and every thread bounds-checks what it touches.
#![no_std]
#![feature(abi_ptx, stdarch_nvptx, asm_experimental_arch)]
#![allow(clippy::missing_safety_doc)]

pub mod attention;
pub mod decode;
pub mod device;
pub mod embedding;
pub mod flash_attention;
pub mod kv_layout;
pub mod launch_shapes;
pub mod matmul;
#[cfg(target_feature = "sm_90a")]
pub mod matmul_wgmma;
#[cfg(target_feature = "sm_90")]
pub mod qkv_attention;
pub mod rmsnorm;
pub mod rope;

/// A kernel cannot unwind; a panic (an out-of-range slice index, say) traps, which the host sees
/// as a launch failure (`CUDA_ERROR_ILLEGAL_INSTRUCTION`) instead of wrong numbers.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unsafe { core::arch::nvptx::trap() }
}
