//! One launcher per kernel of `kernels-gpu`: grid, block and shared-memory sizes as each kernel's
//! doc comment specifies. Pointers are raw `DevicePointer`s so callers can pass sub-ranges
//! (one layer's weights, one chunk's rows); the shape arguments are the caller's promise about
//! how many elements each points at.

use cust::function::{BlockSize, GridSize};
use cust::launch;
use cust::memory::DevicePointer;

use super::{Gpu, cuda};
use crate::error::{Error, Result};

pub type Ptr<T> = DevicePointer<T>;

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Cuda(format!("{what} = {v} does not fit a kernel argument")))
}

impl Gpu {
    fn function(&self, name: &str) -> Result<cust::function::Function<'_>> {
        cuda(name, self.module.get_function(name))
    }

    /// `embedding.rs`: `out[t] = table[ids[t]]`.
    pub fn embedding(
        &self,
        out: Ptr<f32>,
        table: Ptr<u16>,
        ids: Ptr<u32>,
        tokens: usize,
        hidden: usize,
        vocab: usize,
    ) -> Result<()> {
        let f = self.function("embedding_bf16")?;
        let s = &self.stream;
        let (h, v) = (u32_of("hidden", hidden)?, u32_of("vocab", vocab)?);
        unsafe {
            cuda(
                "embedding_bf16",
                launch!(f<<<GridSize::x(u32_of("tokens", tokens)?), BlockSize::x(256), 0, s>>>(out, table, ids, h, v)),
            )
        }
    }

    /// `rmsnorm.rs`: `y[r] = x[r] / rms(x[r]) · w` for `rows` rows of `n`.
    pub fn rmsnorm(&self, y: Ptr<f32>, x: Ptr<f32>, w: Ptr<u16>, rows: usize, n: usize, eps: f32) -> Result<()> {
        let f = self.function("rmsnorm_f32_bf16")?;
        let s = &self.stream;
        let n = u32_of("n", n)?;
        unsafe {
            cuda(
                "rmsnorm_f32_bf16",
                launch!(f<<<GridSize::x(u32_of("rows", rows)?), BlockSize::x(256), 32 * 4, s>>>(y, x, w, n, eps)),
            )
        }
    }

    /// `matmul.rs`: `out[t, r] (+)= x[t]·w[r] + bias[r]`. `bias` may be null.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        out: Ptr<f32>,
        x: Ptr<f32>,
        w: Ptr<u16>,
        bias: Ptr<f32>,
        rows: usize,
        cols: usize,
        tokens: usize,
        accumulate: bool,
    ) -> Result<()> {
        let f = self.function("matmul_bf16")?;
        let s = &self.stream;
        let (r, c, t) = (u32_of("rows", rows)?, u32_of("cols", cols)?, u32_of("tokens", tokens)?);
        let grid = GridSize::x(r.div_ceil(8));
        unsafe {
            cuda(
                "matmul_bf16",
                launch!(f<<<grid, BlockSize::x(256), 0, s>>>(out, x, w, bias, r, c, t, accumulate as u32)),
            )
        }
    }

    /// `rope.rs`: rotate `q` in place; rotate `k` into the K cache and copy `v` into the V cache,
    /// for tokens at positions `*pos0..` (`pos0` points at device memory).
    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv_write(
        &self,
        q: Ptr<f32>,
        k: Ptr<f32>,
        v: Ptr<f32>,
        k_cache: Ptr<f32>,
        v_cache: Ptr<f32>,
        cos: Ptr<f32>,
        sin: Ptr<f32>,
        kv: &crate::kv::KvLayout,
        heads: usize,
        layer: usize,
        pos0: Ptr<u32>,
        tokens: usize,
    ) -> Result<()> {
        let f = self.function("rope_kv_write")?;
        let s = &self.stream;
        let grid = GridSize::xy(u32_of("tokens", tokens)?, u32_of("heads", heads + kv.kv_heads)?);
        let (h, g, d) = (heads as u32, kv.kv_heads as u32, kv.head_dim as u32);
        let (l, m, p) = (layer as u32, u32_of("max_seq", kv.max_seq)?, pos0);
        unsafe {
            cuda(
                "rope_kv_write",
                launch!(f<<<grid, BlockSize::x(64), 0, s>>>(q, k, v, k_cache, v_cache, cos, sin, h, g, d, l, m, p)),
            )
        }
    }

    /// `attention.rs`: causal GQA of `tokens` query rows at positions `*pos0..` over the cache.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        out: Ptr<f32>,
        q: Ptr<f32>,
        k_cache: Ptr<f32>,
        v_cache: Ptr<f32>,
        kv: &crate::kv::KvLayout,
        heads: usize,
        layer: usize,
        pos0: Ptr<u32>,
        tokens: usize,
    ) -> Result<()> {
        if kv.head_dim % 32 != 0 || kv.head_dim > 256 {
            return Err(Error::Cuda(format!(
                "attention kernel needs head_dim a multiple of 32 up to 256, not {}",
                kv.head_dim
            )));
        }
        let f = self.function("attention_f32")?;
        let s = &self.stream;
        let grid = GridSize::xy(u32_of("heads", heads)?, u32_of("tokens", tokens)?);
        let smem = (16 * (kv.head_dim + 2) * 4) as u32;
        let (h, g, d) = (heads as u32, kv.kv_heads as u32, kv.head_dim as u32);
        let (l, m, p) = (layer as u32, u32_of("max_seq", kv.max_seq)?, pos0);
        unsafe {
            cuda(
                "attention_f32",
                launch!(f<<<grid, BlockSize::x(512), smem, s>>>(out, q, k_cache, v_cache, h, g, d, l, m, p)),
            )
        }
    }

    /// `swiglu.rs`: `out = silu(gate) · up` over `n` elements.
    pub fn swiglu(&self, out: Ptr<f32>, gate: Ptr<f32>, up: Ptr<f32>, n: usize) -> Result<()> {
        let f = self.function("swiglu_f32")?;
        let s = &self.stream;
        let n = u32_of("n", n)?;
        unsafe {
            cuda("swiglu_f32", launch!(f<<<GridSize::x(n.div_ceil(256)), BlockSize::x(256), 0, s>>>(out, gate, up, n)))
        }
    }

    /// `argmax.rs`: `out[0] = argmax x[..n]`.
    pub fn argmax(&self, out: Ptr<u32>, x: Ptr<f32>, n: usize) -> Result<()> {
        let f = self.function("argmax_f32")?;
        let s = &self.stream;
        let n = u32_of("n", n)?;
        unsafe { cuda("argmax_f32", launch!(f<<<GridSize::x(1), BlockSize::x(1024), 1024 * 8, s>>>(out, x, n))) }
    }
}
