//! The CPU reference engine: plain f32 loops, parallel over the cores with rayon. It is the CPU
//! twin of every GPU kernel (each kernel's test compares against the function of the same name in
//! [`ops`]) and the fallback when no CUDA device is present.

pub mod engine;
pub mod ops;

pub use engine::CpuEngine;
