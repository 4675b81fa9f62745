//! The CUDA side of the host: finding a device, loading the embedded PTX through `cust`, and
//! launching the kernels of `kernels-gpu`. Every `cust` error is surfaced as [`Error::Cuda`].

pub mod engine;
pub mod kernels;
mod launch;

pub use engine::CudaEngine;
pub use kernels::{Epilogue, MatmulScratch, attention_parts, decode_best};

use cust::context::Context;
use cust::device::Device;
use cust::memory::{AsyncCopyDestination, DeviceBuffer, DeviceCopy};
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

pub(crate) fn cuda<T>(what: &str, r: cust::error::CudaResult<T>) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e}")))
}

/// The result of a raw driver call (`cust::sys`), as [`cuda`] does for `cust`'s own calls.
pub(crate) fn check(what: &str, r: cust::sys::CUresult) -> Result<()> {
    if r == cust::sys::CUresult::CUDA_SUCCESS { Ok(()) } else { Err(Error::Cuda(format!("{what}: {r:?}"))) }
}

/// The newest embedded PTX that a device of compute capability `cc` (× 10) can run: an
/// architecture-specific one (`sm_90a`) only on exactly its compute capability.
pub fn ptx_for(cc: u32) -> Option<(&'static str, &'static str)> {
    KERNELS_PTX
        .iter()
        .rev()
        .find(|(_, arch, specific, _)| if *specific { *arch == cc } else { *arch <= cc })
        .map(|(name, _, _, ptx)| (*name, *ptx))
}

/// One CUDA device with a context, the kernels module and a stream.
pub struct Gpu {
    pub name: String,
    pub arch: &'static str,
    /// Streaming multiprocessors.
    pub sms: usize,
    pub module: Module,
    pub stream: Stream,
    /// `cuLaunchKernelEx`, for programmatic dependent launch (see `launch.rs`); `None` where unused.
    launch_ex: Option<launch::LaunchKernelEx>,
    /// Whether prompt products use `matmul_wgmma` (in the loaded PTX, i.e. `sm_90a`, and not turned
    /// off with `QWEN_RS_NO_WGMMA`); else `matmul_tc`. Tests switch it to compare both.
    pub wgmma: bool,
    /// Tests: with [`Gpu::wgmma`], every product whose `cols % 8 == 0` on `matmul_wgmma` (128) or
    /// `matmul_wgmma_64` (64), whatever its size; `None` (the engine's) chooses by size.
    pub force_wgmma_tokens: Option<usize>,
    /// Whether a decode step's norm, q/k/v, RoPE, cache write and attention are the one cluster
    /// kernel `qkv_attention_decode_*` (needs `cuLaunchKernelEx` and sm_90 PTX; off with
    /// `QWEN_RS_NO_QKV_ATTENTION`), else two kernels. Tests switch it.
    pub qkv_attention: bool,
    _context: Context,
}

impl Gpu {
    /// Initialises the driver and opens device 0. Fails with the driver's reason where there is
    /// no usable device (no driver, `NoDevice`, an unsupported architecture).
    pub fn open() -> Result<Self> {
        cuda("cuInit", cust::init(cust::CudaFlags::empty()))?;
        let device = cuda("cuDeviceGet(0)", Device::get_device(0))?;
        let name = cuda("cuDeviceGetName", device.name())?;
        let major =
            cuda("compute capability", device.get_attribute(cust::device::DeviceAttribute::ComputeCapabilityMajor))?;
        let minor =
            cuda("compute capability", device.get_attribute(cust::device::DeviceAttribute::ComputeCapabilityMinor))?;
        let cc = (major * 10 + minor) as u32;
        let sms = cuda("SM count", device.get_attribute(cust::device::DeviceAttribute::MultiprocessorCount))?;
        let (arch, ptx) = ptx_for(cc).ok_or_else(|| {
            Error::Cuda(format!(
                "{name} (sm_{cc}) is older than every embedded PTX ({:?}); rebuild with QWEN_RS_CUDA_ARCHS=sm_{cc}",
                KERNELS_PTX.iter().map(|k| k.0).collect::<Vec<_>>()
            ))
        })?;
        let context = cuda("cuCtxCreate", Context::new(device))?;
        let module = cuda("loading the kernels' PTX", Module::from_ptx(ptx, &[]))?;
        kernels::allow_large_shared(&module)?;
        kernels::prefer_l1(&module)?;
        // A non-blocking stream, and every copy goes through it (never the legacy stream): so the
        // decode step can be captured into a graph while other threads use the same (primary)
        // context, and nothing here waits on anyone else's work.
        let stream = cuda("cuStreamCreate", Stream::new(StreamFlags::NON_BLOCKING, None))?;
        let launch_ex = launch::find_launch_kernel_ex(cc);
        let wgmma = module.get_function("matmul_wgmma").is_ok() && std::env::var_os("QWEN_RS_NO_WGMMA").is_none();
        let qkv_attention = launch_ex.is_some()
            && module.get_function("qkv_attention_decode_64").is_ok()
            && std::env::var_os("QWEN_RS_NO_QKV_ATTENTION").is_none();
        Ok(Gpu {
            name,
            arch,
            sms: sms.max(1) as usize,
            module,
            stream,
            launch_ex,
            wgmma,
            force_wgmma_tokens: None,
            qkv_attention,
            _context: context,
        })
    }

    /// Makes this device's context current on the calling thread (it is current on the thread that
    /// opened it; every other thread that launches or copies must call this first).
    pub fn make_current(&self) -> Result<()> {
        cuda("cuCtxSetCurrent", cust::context::CurrentContext::set_current(&self._context))
    }

    pub fn upload<T: DeviceCopy>(&self, data: &[T]) -> Result<DeviceBuffer<T>> {
        let buf = self.alloc::<T>(data.len())?;
        // SAFETY: `data` outlives the copy: the stream is synchronised before returning.
        cuda("copying to the device", unsafe { buf.index(..data.len()).async_copy_from(data, &self.stream) })?;
        self.synchronize()?;
        Ok(buf)
    }

    /// Copies `data` into `buf` from element `offset` on (which must fit) and waits for the copy.
    pub fn upload_into<T: DeviceCopy>(&self, buf: &DeviceBuffer<T>, offset: usize, data: &[T]) -> Result<()> {
        if offset + data.len() > buf.len() {
            return Err(Error::Cuda(format!("{} elements at {offset} overrun a buffer of {}", data.len(), buf.len())));
        }
        // SAFETY: `data` outlives the copy: the stream is synchronised before returning.
        cuda("copying to the device", unsafe {
            buf.index(offset..offset + data.len()).async_copy_from(data, &self.stream)
        })?;
        self.synchronize()
    }

    /// An uninitialised device buffer of `n` elements. Out of memory names the size and what is free.
    pub fn alloc<T: DeviceCopy>(&self, n: usize) -> Result<DeviceBuffer<T>> {
        // SAFETY: every buffer is written by a copy or a kernel before it is read.
        unsafe { DeviceBuffer::uninitialized(n.max(1)) }.map_err(|e| {
            let asked = n * std::mem::size_of::<T>();
            match cust::memory::mem_get_info() {
                Ok((free, total)) => Error::Cuda(format!(
                    "allocating {:.1} MiB on {}: {e} ({:.1} MiB free of {:.1} MiB); try a smaller --ctx-size",
                    asked as f64 / 1048576.0,
                    self.name,
                    free as f64 / 1048576.0,
                    total as f64 / 1048576.0
                )),
                Err(_) => Error::Cuda(format!("allocating {:.1} MiB on {}: {e}", asked as f64 / 1048576.0, self.name)),
            }
        })
    }

    /// Waits for the stream, then copies the whole buffer back.
    pub fn download<T: DeviceCopy + Default + Clone>(&self, buf: &DeviceBuffer<T>) -> Result<Vec<T>> {
        let mut v = vec![T::default(); buf.len()];
        // SAFETY: `v` outlives the copy: the stream is synchronised before returning.
        cuda("copying from the device", unsafe { buf.async_copy_to(&mut v[..], &self.stream) })?;
        self.synchronize()?;
        Ok(v)
    }

    pub fn synchronize(&self) -> Result<()> {
        cuda("kernel execution", self.stream.synchronize())
    }
}

#[cfg(test)]
mod tests {
    use super::{KERNELS_PTX, ptx_for};

    /// With the default architectures: an H100 (9.0) gets the `sm_90a` PTX (Hopper's `wgmma`),
    /// a newer device the portable `sm_90` one (`sm_90a` PTX does not load there), an Ampere card
    /// (8.x) `sm_80`, and anything older none.
    #[test]
    fn ptx_choice_by_compute_capability() {
        let embedded: Vec<&str> = KERNELS_PTX.iter().map(|k| k.0).collect();
        if embedded != ["sm_80", "sm_90", "sm_90a"] {
            return; // a build with QWEN_RS_CUDA_ARCHS set embeds other architectures
        }
        let name = |cc| ptx_for(cc).map(|(n, _)| n);
        assert_eq!(name(90), Some("sm_90a"));
        assert_eq!(name(100), Some("sm_90"));
        assert_eq!(name(120), Some("sm_90"));
        assert_eq!(name(89), Some("sm_80"));
        assert_eq!(name(80), Some("sm_80"));
        assert_eq!(name(75), None);
    }
}
