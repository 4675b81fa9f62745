//! Kernel launches with programmatic dependent launch (PDL, Hopper and newer).
//!
//! Normally a kernel starts only after the previous kernel on its stream has finished, and at
//! batch 1 the GPU idles for a few microseconds at every such boundary. A kernel launched with
//! the `PROGRAMMATIC_STREAM_SERIALIZATION` attribute may start as soon as every block of the
//! previous kernel has executed `griddepcontrol.launch_dependents`; it must then execute
//! `griddepcontrol.wait` before it touches anything the previous kernel writes. The decode kernels
//! do both (`kernels-gpu/src/device.rs`: `launch_dependents`, `wait_for_previous_grid`) and, in
//! between, load their first weights, so those are in flight while the previous kernel finishes.
//! Of a prompt's kernels, RMSNorm, `rope_kv_write` and the products that follow an RMSNorm are
//! launched so and wait; none of them calls `launch_dependents`, so the next kernel comes in as
//! the one before finishes rather than at its start (its waiting blocks would take the places of
//! the running kernel's last blocks: BENCHMARKS.md, steps 35–36 and session 10's attempt).
//!
//! `cuLaunchKernelEx` (CUDA 12) is not among `cust` 0.3's bindings: it is looked up at run time
//! with `cuGetProcAddress`, and where the driver lacks it, or the device is older than sm_90, or
//! `QWEN_RS_NO_PDL` is set, the launch is an ordinary `cuLaunchKernel`.

use std::ffi::c_void;
use std::os::raw::{c_int, c_uint};

use cust::function::Function;
use cust::sys as cu;

use super::{Gpu, check};
use crate::error::Result;

/// `CUlaunchAttribute` (cuda.h): an id, padding to 8 bytes, a 64-byte value union.
#[repr(C)]
struct LaunchAttribute {
    id: c_uint,
    pad: [u8; 4],
    value: [u8; 64],
}

impl LaunchAttribute {
    /// Attribute `id` whose value starts with `words` (native-endian `u32`s; the rest zero): a flag
    /// is one word, a cluster's dimensions three.
    fn new(id: c_uint, words: &[u32]) -> Self {
        let mut value = [0u8; 64];
        for (i, w) in words.iter().enumerate() {
            value[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        LaunchAttribute { id, pad: [0; 4], value }
    }
}

/// `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION` (cuda.h).
const PROGRAMMATIC_STREAM_SERIALIZATION: c_uint = 6;

/// `CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION` (cuda.h): the value is three `u32`, x, y, z.
const CLUSTER_DIMENSION: c_uint = 4;

/// `CUlaunchConfig` (cuda.h).
#[repr(C)]
pub(super) struct LaunchConfig {
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem_bytes: c_uint,
    stream: cu::CUstream,
    attrs: *mut LaunchAttribute,
    num_attrs: c_uint,
}

pub(super) type LaunchKernelEx =
    unsafe extern "C" fn(*const LaunchConfig, cu::CUfunction, *mut *mut c_void, *mut *mut c_void) -> cu::CUresult;

/// `cuLaunchKernelEx` where the driver and device support PDL and it is not turned off.
pub(super) fn find_launch_kernel_ex(cc: u32) -> Option<LaunchKernelEx> {
    if cc < 90 || std::env::var_os("QWEN_RS_NO_PDL").is_some() {
        return None;
    }
    let mut pfn: *mut c_void = std::ptr::null_mut();
    let name = c"cuLaunchKernelEx";
    let r = unsafe { cu::cuGetProcAddress(name.as_ptr(), &mut pfn, 12000 as c_int, 0) };
    if r != cu::CUresult::CUDA_SUCCESS || pfn.is_null() {
        return None;
    }
    // SAFETY: the driver returned its `cuLaunchKernelEx`, whose C signature `LaunchKernelEx` mirrors.
    Some(unsafe { std::mem::transmute::<*mut c_void, LaunchKernelEx>(pfn) })
}

/// The kernel-argument array `cuLaunchKernel` takes: a pointer to each argument.
macro_rules! kernel_args {
    ($($arg:expr),* $(,)?) => {
        [$(&$arg as *const _ as *mut ::std::ffi::c_void),*]
    };
}
pub(crate) use kernel_args;

impl Gpu {
    /// Whether decode kernels are launched with programmatic dependent launch.
    pub fn uses_pdl(&self) -> bool {
        self.launch_ex.is_some()
    }

    /// Launches `f` on the stream, allowed to overlap the previous kernel (PDL) where supported.
    /// `f` must wait for the previous grid (`griddepcontrol.wait`) before reading or writing any
    /// activation. `args` points at each argument, in the kernel's order, with the kernel's types.
    pub(super) unsafe fn launch_overlapped(
        &self,
        f: &Function,
        name: &str,
        grid: [u32; 3],
        block: u32,
        shared: u32,
        args: &mut [*mut c_void],
    ) -> Result<()> {
        match self.launch_ex {
            Some(launch) => {
                let mut attrs = [LaunchAttribute::new(PROGRAMMATIC_STREAM_SERIALIZATION, &[1])];
                unsafe { self.launch_with(launch, f, name, grid, block, shared, &mut attrs, args) }
            }
            None => unsafe { self.launch_plain(f, name, grid, block, shared, args) },
        }
    }

    /// Launches `f` with its blocks in thread-block clusters of `cluster` along x (Hopper), allowed
    /// to overlap the previous kernel as [`Gpu::launch_overlapped`]. Needs `cuLaunchKernelEx`: the
    /// caller checks [`Gpu::uses_pdl`] (the cluster kernels exist only where it is found).
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn launch_cluster(
        &self,
        f: &Function,
        name: &str,
        grid: [u32; 3],
        block: u32,
        shared: u32,
        cluster: u32,
        args: &mut [*mut c_void],
    ) -> Result<()> {
        let Some(launch) = self.launch_ex else {
            return Err(crate::error::Error::Cuda(format!("{name} needs cuLaunchKernelEx (a Hopper GPU and CUDA 12)")));
        };
        let mut attrs = [
            LaunchAttribute::new(CLUSTER_DIMENSION, &[cluster, 1, 1]),
            LaunchAttribute::new(PROGRAMMATIC_STREAM_SERIALIZATION, &[1]),
        ];
        unsafe { self.launch_with(launch, f, name, grid, block, shared, &mut attrs, args) }
    }

    /// `cuLaunchKernelEx` of `f` on the stream with the launch attributes `attrs`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn launch_with(
        &self,
        launch: LaunchKernelEx,
        f: &Function,
        name: &str,
        grid: [u32; 3],
        block: u32,
        shared: u32,
        attrs: &mut [LaunchAttribute],
        args: &mut [*mut c_void],
    ) -> Result<()> {
        let config = LaunchConfig {
            grid,
            block: [block, 1, 1],
            shared_mem_bytes: shared,
            stream: self.stream.as_inner(),
            attrs: attrs.as_mut_ptr(),
            num_attrs: attrs.len() as c_uint,
        };
        let r = unsafe { launch(&config, f.to_raw(), args.as_mut_ptr(), std::ptr::null_mut()) };
        check(&format!("launching {name}"), r)
    }

    /// Launches `f` on the stream after the previous kernel (`cuLaunchKernel`); `args` as for
    /// [`Gpu::launch_overlapped`].
    pub(super) unsafe fn launch_plain(
        &self,
        f: &Function,
        name: &str,
        grid: [u32; 3],
        block: u32,
        shared: u32,
        args: &mut [*mut c_void],
    ) -> Result<()> {
        let r = unsafe {
            cu::cuLaunchKernel(
                f.to_raw(),
                grid[0],
                grid[1],
                grid[2],
                block,
                1,
                1,
                shared,
                self.stream.as_inner(),
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        check(&format!("launching {name}"), r)
    }
}

#[cfg(test)]
mod tests {
    use super::{CLUSTER_DIMENSION, LaunchAttribute, PROGRAMMATIC_STREAM_SERIALIZATION};

    /// The attributes have `CUlaunchAttribute`'s size (72 bytes) and the value bytes the driver
    /// reads: an `int` 1 for PDL, `{x, y, z}` as three `unsigned int` for the cluster.
    #[test]
    fn launch_attributes_hold_what_cuda_h_says() {
        assert_eq!(std::mem::size_of::<LaunchAttribute>(), 72);
        let pdl = LaunchAttribute::new(PROGRAMMATIC_STREAM_SERIALIZATION, &[1]);
        assert_eq!((pdl.id, pdl.pad), (6, [0; 4]));
        assert_eq!(pdl.value[..4], 1i32.to_ne_bytes());
        assert!(pdl.value[4..].iter().all(|&b| b == 0));
        let cluster = LaunchAttribute::new(CLUSTER_DIMENSION, &[8, 1, 1]);
        assert_eq!(cluster.id, 4);
        let words: Vec<u32> = cluster.value.chunks(4).map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(words[..3], [8, 1, 1]);
        assert!(words[3..].iter().all(|&w| w == 0));
    }
}
