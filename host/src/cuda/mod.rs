//! The CUDA side of the host: finding a device, loading the embedded PTX through `cust`, and
//! launching the kernels of `kernels-gpu`. Every `cust` error is surfaced as [`Error::Cuda`].

use cust::context::Context;
use cust::device::Device;
use cust::function::{BlockSize, GridSize};
use cust::launch;
use cust::memory::{CopyDestination, DeviceBuffer, DeviceCopy};
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

fn cuda<T>(what: &str, r: cust::error::CudaResult<T>) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e}")))
}

/// The newest embedded PTX that a device of compute capability `cc` (× 10) can run.
pub fn ptx_for(cc: u32) -> Option<(&'static str, &'static str)> {
    KERNELS_PTX.iter().rev().find(|(_, arch, _)| *arch <= cc).map(|(name, _, ptx)| (*name, *ptx))
}

/// One CUDA device with a context, the kernels module and a stream.
pub struct Gpu {
    pub name: String,
    pub arch: &'static str,
    pub module: Module,
    pub stream: Stream,
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
        let (arch, ptx) = ptx_for(cc).ok_or_else(|| {
            Error::Cuda(format!(
                "{name} (sm_{cc}) is older than every embedded PTX ({:?}); rebuild with QWEN_RS_CUDA_ARCHS=sm_{cc}",
                KERNELS_PTX.iter().map(|k| k.0).collect::<Vec<_>>()
            ))
        })?;
        let context = cuda("cuCtxCreate", Context::new(device))?;
        let module = cuda("loading the kernels' PTX", Module::from_ptx(ptx, &[]))?;
        let stream = cuda("cuStreamCreate", Stream::new(StreamFlags::NON_BLOCKING, None))?;
        Ok(Gpu { name, arch, module, stream, _context: context })
    }

    pub fn upload<T: DeviceCopy>(&self, data: &[T]) -> Result<DeviceBuffer<T>> {
        cuda("copying to the device", DeviceBuffer::from_slice(data))
    }

    pub fn download<T: DeviceCopy + Default + Clone>(&self, buf: &DeviceBuffer<T>) -> Result<Vec<T>> {
        let mut v = vec![T::default(); buf.len()];
        cuda("copying from the device", buf.copy_to(&mut v[..]))?;
        Ok(v)
    }

    pub fn synchronize(&self) -> Result<()> {
        cuda("kernel execution", self.stream.synchronize())
    }

    /// `kernels-gpu/src/rmsnorm.rs`: `y[r] = rmsnorm(x[r]) · w` for `rows` rows of `n`.
    pub fn rmsnorm(
        &self,
        y: &mut DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        w: &DeviceBuffer<u16>,
        rows: usize,
        n: usize,
        eps: f32,
    ) -> Result<()> {
        if x.len() < rows * n || y.len() < rows * n || w.len() < n {
            return Err(Error::Cuda(format!("rmsnorm: buffers too small for {rows}×{n}")));
        }
        let f = cuda("rmsnorm_f32_bf16", self.module.get_function("rmsnorm_f32_bf16"))?;
        let stream = &self.stream;
        unsafe {
            cuda(
                "launching rmsnorm_f32_bf16",
                launch!(f<<<GridSize::x(rows as u32), BlockSize::x(256), 32 * 4, stream>>>(
                    y.as_device_ptr(), x.as_device_ptr(), w.as_device_ptr(), n as u32, eps
                )),
            )
        }
    }
}
