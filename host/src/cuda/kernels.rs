//! One launcher per kernel of `kernels-gpu`: grid, block and shared-memory sizes as each kernel's
//! doc comment specifies. Pointers are raw `DevicePointer`s so callers can pass sub-ranges
//! (one layer's weights, one chunk's rows); the shape arguments are the caller's promise about
//! how many elements each points at.

use cust::function::{BlockSize, GridSize};
use cust::launch;
use cust::memory::{DeviceBuffer, DevicePointer};
use cust::module::Module;

use super::launch::kernel_args;
use super::{Gpu, check, cuda};
use crate::error::{Error, Result};
use cust::sys as cu;
use shapes::{
    DECODE_ATTENTION_WARPS, DECODE_ATTENTION_WIDE_WARPS, DECODE_WARPS, LM_HEAD_ROWS_PER_WARP, PREFILL_ATTENTION_WARPS,
    TC_K, TC_SHARED_BYTES, TC_TILE, TC_TILE_ELEMS, WG_K, WG_ROWS, WG_SHARED_BYTES, WG_SMALL_TOKENS, WG_TOKENS,
    wg_shared_bytes, wg_threads,
};

pub type Ptr<T> = DevicePointer<T>;

/// The kernels' launch-shape constants, the same file they are compiled with.
#[path = "../../../kernels-gpu/src/launch_shapes.rs"]
#[allow(dead_code)]
mod shapes;

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Cuda(format!("{what} = {v} does not fit a kernel argument")))
}

/// What `matmul_tc` does with its product `y` (`launch_shapes.rs`'s `EPILOGUE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// `out = y`.
    Store,
    /// `out += y` (the residual adds).
    Accumulate,
    /// `out[t, i] = silu(y[t, 2i]) · y[t, 2i + 1]`: gate and up rows interleaved, `out` half as wide.
    SwiGlu,
}

impl Epilogue {
    fn code(self) -> u32 {
        match self {
            Epilogue::Store => shapes::EPILOGUE_STORE,
            Epilogue::Accumulate => shapes::EPILOGUE_ACCUMULATE,
            Epilogue::SwiGlu => shapes::EPILOGUE_SWIGLU,
        }
    }
}

/// Threads a block of the warp-per-rows decode kernels.
const DECODE_BLOCK: u32 = 32 * DECODE_WARPS as u32;

/// Partial 64 × 64 tiles the split-K products may leave at once (16 MiB of f32; a quarter as many
/// of `matmul_wgmma`'s 128 × 128). 1,024 rather than 512 so that `matmul_wgmma`'s bigger tiles can
/// still be split on short prompts.
pub const MATMUL_PARTIAL_TILES: usize = 1024;

/// Scratch of the split-K prompt products (`matmul_tc`, `matmul_wgmma`): room for
/// [`MATMUL_PARTIAL_TILES`] partial 64 × 64 tiles and one arrival counter per output tile (zero
/// between launches).
pub struct MatmulScratch {
    work: DeviceBuffer<f32>,
    counters: DeviceBuffer<u32>,
}

impl MatmulScratch {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(MatmulScratch {
            work: gpu.alloc(MATMUL_SCRATCH_FLOATS)?,
            counters: gpu.upload(&vec![0u32; MATMUL_PARTIAL_TILES])?,
        })
    }
}

/// A prompt-product kernel's tiling: output tile `tile_rows × tile_tokens`, K step `k`, threads a
/// block, and the blocks a split K aims at (per SM).
struct ProductTiling {
    tile_rows: usize,
    tile_tokens: usize,
    k: usize,
    threads: u32,
    blocks_per_sm: usize,
}

const MMA_TILING: ProductTiling =
    ProductTiling { tile_rows: TC_TILE, tile_tokens: TC_TILE, k: TC_K, threads: 128, blocks_per_sm: 3 };
/// `matmul_wgmma`'s tiling with `tokens`-token tiles, `blocks_per_sm` of which fit an SM.
const fn wgmma_tiling(tokens: usize, blocks_per_sm: usize) -> ProductTiling {
    ProductTiling {
        tile_rows: WG_ROWS,
        tile_tokens: tokens,
        k: WG_K,
        threads: wg_threads(tokens) as u32,
        blocks_per_sm,
    }
}
const WGMMA_TILING: ProductTiling = wgmma_tiling(WG_TOKENS, 2);
const WGMMA_64_TILING: ProductTiling = wgmma_tiling(WG_SMALL_TOKENS, 3);

/// Whether `matmul_wgmma` beats `matmul_tc` on a product of `rows × cols` weights and `tokens`
/// tokens: where it has enough work, `rows · cols · tokens` ≥ 2·10⁹ multiply-adds. Chosen from
/// whole prompts on an H100 (BENCHMARKS.md, step 31, after step 30's faster `matmul_wgmma`): at
/// 2·10⁹ the 0.5B shape's 512-token gate/up and down products and the 1.5B's 128-token gate/up
/// move to it (0.5B prefill 512 5.55 → 5.30 ms, 1.5B prefill 128 6.34 → 5.40 ms); at 5·10⁸, or with
/// every product on it, short prompts were slower (0.5B 128 tokens 3.65 and 4.17 ms against 2.90),
/// as were the small products of a 1,024-token chunk (q/k/v, output: ncu 33.4 and 41.4 µs
/// against `matmul_tc`'s 31.2 and 26.7).
fn wgmma_pays(rows: usize, cols: usize, tokens: usize) -> bool {
    let work = rows as f64 * cols as f64 * tokens as f64;
    work >= 2e9
}

/// Whether a `matmul_wgmma` product runs on 64-token tiles (`matmul_wgmma_64`, three blocks an
/// SM) rather than 128 (two an SM): on prompts of up to 512 tokens, whose grids of 128-token tiles
/// leave a last wave nearly empty (the 0.5B's 512-token gate/up: 304 tiles on 264 slots) or, split
/// over K, hold few tiles. Chosen on an H100 (BENCHMARKS.md, step 37): 0.5B prefill 512 4.70–4.76
/// → 4.53–4.74 ms (ncu, against 4b5a5bb's 128-token tiles: gate/up 75.1 → 65.6 µs, down 54.1 →
/// 47.4); at 1,024 tokens and more the bigger tiles were faster (session 10: gate/up 120.4
/// against 138.9 µs).
fn wgmma_small_tiles(tokens: usize) -> bool {
    tokens <= 512
}

/// Blocks per output tile of a prompt product (its grid's `z`): enough to give the GPU about
/// `blocks_per_sm` blocks per SM when the tiles alone do not, each block keeping at least 4 K steps, the partials
/// fitting the scratch, and no split left empty. (`matmul_tc`'s 127 registers a thread would let
/// four blocks share an SM; aiming at 3, 4 or 6 blocks per SM gave the same prefill times on an
/// H100, BENCHMARKS.md step 16. Two of `matmul_wgmma`'s fit an SM.)
fn matmul_splits(tiling: &ProductTiling, rows: usize, cols: usize, tokens: usize, sms: usize) -> usize {
    let tiles = rows.div_ceil(tiling.tile_rows) * tokens.div_ceil(tiling.tile_tokens);
    let steps = cols.div_ceil(tiling.k);
    let capacity = MATMUL_PARTIAL_TILES * TC_TILE_ELEMS / (tiling.tile_rows * tiling.tile_tokens);
    let want = (tiling.blocks_per_sm * sms / tiles.max(1)).min(steps / 4).min(capacity / tiles.max(1));
    if want <= 1 {
        return 1;
    }
    steps.div_ceil(steps.div_ceil(want))
}

/// Floats of the split-K scratch ([`MatmulScratch`]).
const MATMUL_SCRATCH_FLOATS: usize = MATMUL_PARTIAL_TILES * TC_TILE_ELEMS;

/// Floats one part of one query tile leaves in the scratch (`flash_attention.rs`): 128 threads'
/// `d/2` outputs, 2 maxima and 2 normalisers.
fn flash_part_floats(head_dim: usize) -> usize {
    128 * (head_dim / 2 + 4)
}

/// Parts the prompt attention splits each query tile's keys into (`flash_attention.rs`): one
/// part per 384 rows of the chunk, at most 3, and no more than the scratch holds. Without parts a
/// 1,024-token chunk is 224 blocks on 132 SMs for the 0.5B shape, and the last query tiles' 64
/// key tiles run one after another. Chosen with ncu on an H100 (BENCHMARKS.md, step 32; µs a
/// launch, 0.5B shape): 1,024 rows at position 0 / 1,024 44.5 / 90.7 in one part, 38.0 / 86.0
/// in two, 38.3 / 80.4 in three, 40.8 / 82.0 in four; 512 rows 21.5, 19.3, 20.3, 20.4; 128 rows
/// 9.2, 10.0, 10.1, 9.9.
pub fn attention_parts(tokens: usize, heads: usize, head_dim: usize) -> usize {
    let query_tiles = tokens.div_ceil(shapes::FLASH_ROWS) * heads;
    (1..=tokens.div_ceil(384).clamp(1, 3)).rev().find(|&p| flash_parts_fit(p, query_tiles, head_dim)).unwrap_or(1)
}

/// Whether `parts` parts of `query_tiles` (query tile, head) blocks fit the split-K scratch: one
/// counter per block, and `parts` slots of [`flash_part_floats`] each (one part needs neither).
fn flash_parts_fit(parts: usize, query_tiles: usize, head_dim: usize) -> bool {
    parts == 1
        || query_tiles <= MATMUL_PARTIAL_TILES
            && parts * query_tiles * flash_part_floats(head_dim) <= MATMUL_SCRATCH_FLOATS
}

/// Allows the kernels that use more than the 48 KiB of dynamic shared memory a launch gets by
/// default (`matmul_wgmma`, where the PTX has it; the flash attention) what their
/// launches ask for: once, when the module is loaded, instead of before every launch.
pub(super) fn allow_large_shared(module: &Module) -> Result<()> {
    let kernels = [
        ("matmul_wgmma", WG_SHARED_BYTES),
        ("matmul_wgmma_64", wg_shared_bytes(WG_SMALL_TOKENS)),
        ("attention_prefill_tc_64", shapes::flash_shared_bytes(64)),
        ("attention_prefill_tc_128", shapes::flash_shared_bytes(128)),
    ];
    for (name, bytes) in kernels {
        if bytes > 48 * 1024 {
            set_attribute(
                module,
                name,
                cu::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )?;
        }
    }
    Ok(())
}

/// Sets `attribute` of kernel `name` to `value`, where the module has that kernel (the sm_90a
/// PTX alone has `matmul_wgmma`).
fn set_attribute(module: &Module, name: &str, attribute: cu::CUfunction_attribute, value: i32) -> Result<()> {
    let Ok(f) = module.get_function(name) else { return Ok(()) };
    check(name, unsafe { cu::cuFuncSetAttribute(f.to_raw(), attribute, value) })
}

/// The one-token decode products (`decode.rs`) that use no shared memory beyond a block
/// reduction's scratch, and re-read their activations from L1 (`gate_up_silu_decode_{4,8,16}`
/// keep theirs in shared memory and are left at the driver's choice, as are
/// `residual_matvec_decode_{3,5,10}`: with the smallest carve-out the 1.5B decoded 652-653
/// tok/s against 676-678 without them, BENCHMARKS.md step 41).
const DECODE_PRODUCTS: [&str; 4] =
    ["qkv_rope_decode", "residual_matvec_decode", "gate_up_silu_decode", "lm_head_argmax"];

/// Asks the driver to run the decode products with the smallest shared-memory carve-out, which
/// leaves the largest L1 (`PREFERRED_SHARED_MEMORY_CARVEOUT` 0 %). On an H100 the 0.5B shape then
/// decoded 1-2 % faster than with the driver's default. Not the decode attention: at the smallest
/// carve-out its blocks no longer share an SM, and the 1.5B and 7B shapes decoded 4-8 % slower at
/// context 2048 (BENCHMARKS.md, step 21).
pub(super) fn prefer_l1(module: &Module) -> Result<()> {
    for name in DECODE_PRODUCTS {
        set_attribute(module, name, cu::CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 0)?;
    }
    Ok(())
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
        let (rows, n) = (u32_of("rows", rows)?, u32_of("n", n)?);
        let mut args = kernel_args![y, x, w, n, eps];
        unsafe { self.launch_overlapped(&f, "rmsnorm_f32_bf16", [rows, 1, 1], 256, 32 * 4, &mut args) }
    }

    /// `matmul.rs`: `y[t, r] = x[t]·w[r] + bias[r]` on tensor cores (split-bf16 products), then
    /// the epilogue (`out = y`, `out += y`, or SwiGLU of row pairs into an `out` of `rows / 2`
    /// columns). `bias` may be null. `matmul_wgmma` where [`Gpu::wgmma`], `cols % 8 == 0`
    /// and `wgmma_pays`, else `matmul_tc`. Short prompts give few output tiles; then the K range is split over several
    /// blocks per tile (partial sums in `scratch`) so that the grid fills the GPU. `overlap`:
    /// launched with programmatic dependent launch where the device has it (the kernel waits for
    /// the one before it before reading anything), for products that follow a small kernel; after
    /// a product, early-resident blocks would take its last blocks' places.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        scratch: &MatmulScratch,
        out: Ptr<f32>,
        x: Ptr<f32>,
        w: Ptr<u16>,
        bias: Ptr<f32>,
        rows: usize,
        cols: usize,
        tokens: usize,
        epilogue: Epilogue,
        overlap: bool,
    ) -> Result<()> {
        if epilogue == Epilogue::SwiGlu && !rows.is_multiple_of(2) {
            return Err(Error::Cuda(format!("the SwiGLU product needs gate/up row pairs, not {rows} rows")));
        }
        // The `wgmma` kernel's tile tokens, or `None` for `matmul_tc`.
        let wg_tokens = match self.force_wgmma_tokens {
            _ if !(self.wgmma && cols.is_multiple_of(8)) => None,
            Some(t) => Some(t),
            None if !wgmma_pays(rows, cols, tokens) => None,
            None if wgmma_small_tiles(tokens) => Some(WG_SMALL_TOKENS),
            None => Some(WG_TOKENS),
        };
        let (name, tiling, smem) = match wg_tokens {
            None => ("matmul_tc", &MMA_TILING, TC_SHARED_BYTES),
            Some(WG_SMALL_TOKENS) => ("matmul_wgmma_64", &WGMMA_64_TILING, wg_shared_bytes(WG_SMALL_TOKENS)),
            Some(_) => ("matmul_wgmma", &WGMMA_TILING, WG_SHARED_BYTES),
        };
        let f = self.function(name)?;
        let (r, c, t) = (u32_of("rows", rows)?, u32_of("cols", cols)?, u32_of("tokens", tokens)?);
        let splits = matmul_splits(tiling, rows, cols, tokens, self.sms);
        let grid = [r.div_ceil(tiling.tile_rows as u32), t.div_ceil(tiling.tile_tokens as u32), splits as u32];
        let (work, counters) = (scratch.work.as_device_ptr(), scratch.counters.as_device_ptr());
        let mut args = kernel_args![out, x, w, bias, r, c, t, epilogue.code(), work, counters];
        if overlap {
            unsafe { self.launch_overlapped(&f, name, grid, tiling.threads, smem as u32, &mut args) }
        } else {
            unsafe { self.launch_plain(&f, name, grid, tiling.threads, smem as u32, &mut args) }
        }
    }

    /// `rope.rs`: from each `qkv` row (queries, keys, values side by side) rotate the queries
    /// into `q`, rotate the keys into the K cache and copy the values into the V cache, for
    /// tokens at positions `*pos0..` (`pos0` points at device memory).
    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv_write(
        &self,
        q: Ptr<f32>,
        qkv: Ptr<f32>,
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
        if !kv.head_dim.is_multiple_of(8) {
            return Err(Error::Cuda(format!("rope_kv_write needs head_dim a multiple of 8, not {}", kv.head_dim)));
        }
        let grid = [u32_of("tokens", tokens)?, 1, 1];
        let (h, g, d) = (u32_of("heads", heads)?, kv.kv_heads as u32, kv.head_dim as u32);
        let (l, m, p) = (layer as u32, u32_of("max_seq", kv.max_seq)?, pos0);
        // a thread a work item (rope.rs), up to 1,024
        let items = shapes::rope_work_items(heads, kv.kv_heads, kv.head_dim);
        let block = items.next_multiple_of(32).clamp(32, 1024) as u32;
        let mut args = kernel_args![q, qkv, k_cache, v_cache, cos, sin, h, g, d, l, m, p];
        unsafe { self.launch_overlapped(&f, "rope_kv_write", grid, block, 0, &mut args) }
    }

    /// Causal GQA of `tokens` query rows at positions `*pos0..` over the cache: on tensor cores
    /// (`flash_attention.rs`, each query tile's keys in `parts` parts merged through `scratch`;
    /// `None`: [`attention_parts`]'s count) for head_dim 64 and 128, else `attention.rs`'s
    /// `attention_f32` (which ignores `parts`).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        scratch: &MatmulScratch,
        out: Ptr<f32>,
        q: Ptr<f32>,
        k_cache: Ptr<f32>,
        v_cache: Ptr<f32>,
        kv: &crate::kv::KvLayout,
        heads: usize,
        layer: usize,
        pos0: Ptr<u32>,
        tokens: usize,
        parts: Option<usize>,
    ) -> Result<()> {
        check_head_dim(kv.head_dim)?;
        let s = &self.stream;
        let (h, g, d) = (heads as u32, kv.kv_heads as u32, kv.head_dim as u32);
        let (l, m, p) = (layer as u32, u32_of("max_seq", kv.max_seq)?, pos0);
        let flash = match kv.head_dim {
            64 => Some("attention_prefill_tc_64"),
            128 => Some("attention_prefill_tc_128"),
            _ => None,
        };
        if let Some(name) = flash {
            let f = self.function(name)?;
            let smem = shapes::flash_shared_bytes(kv.head_dim) as u32;
            let t = u32_of("tokens", tokens)?;
            let query_tiles = tokens.div_ceil(shapes::FLASH_ROWS) * heads;
            let parts = parts.unwrap_or_else(|| attention_parts(tokens, heads, kv.head_dim));
            if parts == 0 || !flash_parts_fit(parts, query_tiles, kv.head_dim) {
                return Err(Error::Cuda(format!("attention in {parts} parts does not fit the scratch")));
            }
            let grid = GridSize::xy(u32_of("heads · parts", heads * parts)?, t.div_ceil(shapes::FLASH_ROWS as u32));
            let (work, counters) = (scratch.work.as_device_ptr(), scratch.counters.as_device_ptr());
            return unsafe {
                cuda(
                    name,
                    launch!(f<<<grid, BlockSize::x(128), smem, s>>>(
                        out, q, k_cache, v_cache, h, g, l, m, p, t, work, counters
                    )),
                )
            };
        }
        let f = self.function("attention_f32")?;
        let grid = GridSize::xy(u32_of("heads", heads)?, u32_of("tokens", tokens)?);
        let smem = (PREFILL_ATTENTION_WARPS * (kv.head_dim + 2) * 4) as u32;
        unsafe {
            cuda(
                "attention_f32",
                launch!(f<<<grid, BlockSize::x(32 * PREFILL_ATTENTION_WARPS as u32), smem, s>>>(
                    out, q, k_cache, v_cache, h, g, d, l, m, p
                )),
            )
        }
    }

    /// `decode.rs`: `[q; k; v] = W_qkv · rmsnorm(x) + b`, RoPE on q and k, q to `q`, k and v into
    /// the caches at position `*pos`. One token; `w` is the three weights stacked.
    #[allow(clippy::too_many_arguments)]
    pub fn qkv_rope_decode(
        &self,
        q: Ptr<f32>,
        k_cache: Ptr<f32>,
        v_cache: Ptr<f32>,
        x: Ptr<f32>,
        norm: Ptr<u16>,
        eps: f32,
        w: Ptr<u16>,
        bias: Ptr<f32>,
        cos: Ptr<f32>,
        sin: Ptr<f32>,
        cols: usize,
        kv: &crate::kv::KvLayout,
        heads: usize,
        layer: usize,
        pos: Ptr<u32>,
    ) -> Result<()> {
        let f = self.function("qkv_rope_decode")?;
        let pairs = (heads + 2 * kv.kv_heads) * kv.head_dim / 2;
        let grid = [u32_of("q/k/v rows", pairs)?.div_ceil(DECODE_WARPS as u32), 1, 1];
        let (c, h, g, d) = (u32_of("cols", cols)?, heads as u32, kv.kv_heads as u32, kv.head_dim as u32);
        let (l, m) = (layer as u32, u32_of("max_seq", kv.max_seq)?);
        let mut args = kernel_args![q, k_cache, v_cache, x, norm, eps, w, bias, cos, sin, c, h, g, d, l, m, pos];
        unsafe { self.launch_overlapped(&f, "qkv_rope_decode", grid, DECODE_BLOCK, 0, &mut args) }
    }

    /// `decode.rs`: `out = silu(gate) · up` with `[gate; up] = W_gu · rmsnorm(x)`, one token
    /// (`gate_up_silu_decode_{4,8,16}`, a warp's whole row pair in flight, for rows of up to 4,096
    /// columns; `gate_up_silu_decode` for wider ones).
    #[allow(clippy::too_many_arguments)]
    pub fn gate_up_silu_decode(
        &self,
        out: Ptr<f32>,
        x: Ptr<f32>,
        norm: Ptr<u16>,
        eps: f32,
        w: Ptr<u16>,
        inter: usize,
        cols: usize,
    ) -> Result<()> {
        let (i, c) = (u32_of("intermediate", inter)?, u32_of("cols", cols)?);
        let mut args = kernel_args![out, x, norm, eps, w, i, c];
        let grid = [i.div_ceil(DECODE_WARPS as u32), 1, 1];
        let chunks = shapes::gate_up_chunks(cols);
        let name = match chunks {
            Some(4) => "gate_up_silu_decode_4",
            Some(8) => "gate_up_silu_decode_8",
            Some(_) => "gate_up_silu_decode_16",
            None => "gate_up_silu_decode",
        };
        let smem =
            if chunks.is_some() { u32_of("gate/up shared memory", shapes::gate_up_shared_bytes(cols))? } else { 0 };
        let f = self.function(name)?;
        unsafe { self.launch_overlapped(&f, name, grid, DECODE_BLOCK, smem, &mut args) }
    }

    /// `decode.rs`: `logits = W · rmsnorm(x)` and the packed argmax in `best` (which must be 0
    /// before; [`decode_best`] reads it).
    #[allow(clippy::too_many_arguments)]
    pub fn lm_head_argmax(
        &self,
        logits: Ptr<f32>,
        best: Ptr<u64>,
        x: Ptr<f32>,
        norm: Ptr<u16>,
        eps: f32,
        w: Ptr<u16>,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let f = self.function("lm_head_argmax")?;
        let (r, c) = (u32_of("rows", rows)?, u32_of("cols", cols)?);
        let grid = [r.div_ceil((DECODE_WARPS * LM_HEAD_ROWS_PER_WARP) as u32), 1, 1];
        let mut args = kernel_args![logits, best, x, norm, eps, w, r, c];
        unsafe { self.launch_overlapped(&f, "lm_head_argmax", grid, DECODE_BLOCK, 0, &mut args) }
    }

    /// `decode.rs`: after a greedy step, `chosen[io[0]] = id` and `io = [io[0] + 1, id]` with `id`
    /// the token `best` holds, so that the next step runs without the host.
    pub fn greedy_advance(&self, io: Ptr<u32>, chosen: Ptr<u32>, best: Ptr<u64>, max_seq: usize) -> Result<()> {
        let f = self.function("greedy_advance")?;
        let mut args = kernel_args![io, chosen, best, u32_of("max_seq", max_seq)?];
        unsafe { self.launch_overlapped(&f, "greedy_advance", [1, 1, 1], 32, 0, &mut args) }
    }

    /// `decode.rs`: `out += W · x` for one token (the residual products).
    pub fn residual_matvec_decode(
        &self,
        out: Ptr<f32>,
        x: Ptr<f32>,
        w: Ptr<u16>,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let (r, c) = (u32_of("rows", rows)?, u32_of("cols", cols)?);
        let mut args = kernel_args![out, x, w, r, c];
        if let Some((name, threads)) = residual_inflight(rows, cols, self.sms) {
            let f = self.function(name)?;
            return unsafe { self.launch_overlapped(&f, name, [r, 1, 1], threads as u32, 32 * 4, &mut args) };
        }
        let f = self.function("residual_matvec_decode")?;
        unsafe { self.launch_overlapped(&f, "residual_matvec_decode", [r, 1, 1], 128, 32 * 4, &mut args) }
    }

    /// `attention.rs`: split-sequence attention of the one query row at position `*pos0`.
    /// `partial` holds `heads · splits · (head_dim + 2)` f32, `counters` `heads` u32 (zero).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_decode(
        &self,
        out: Ptr<f32>,
        partial: Ptr<f32>,
        counters: Ptr<u32>,
        q: Ptr<f32>,
        k_cache: Ptr<f32>,
        v_cache: Ptr<f32>,
        kv: &crate::kv::KvLayout,
        heads: usize,
        layer: usize,
        pos0: Ptr<u32>,
        splits: usize,
    ) -> Result<()> {
        check_head_dim(kv.head_dim)?;
        let (name, warps, _) = decode_attention_kernel(kv.head_dim);
        let f = self.function(name)?;
        let grid = [u32_of("heads", heads)?, u32_of("splits", splits)?, 1];
        let smem = ((warps * (kv.head_dim + 2) + 1) * 4) as u32;
        let (h, g, d) = (heads as u32, kv.kv_heads as u32, kv.head_dim as u32);
        let (l, m, n) = (layer as u32, u32_of("max_seq", kv.max_seq)?, splits as u32);
        let mut args = kernel_args![out, partial, counters, q, k_cache, v_cache, h, g, d, l, m, pos0, n];
        unsafe { self.launch_overlapped(&f, name, grid, 32 * warps as u32, smem, &mut args) }
    }
}

impl Gpu {
    /// Whether `qkv_attention_decode` has an instance for this shape: head_dim 64 or 128, rows of
    /// `hidden` columns that a warp's lanes hold whole (`qkv_attention_chunks`).
    pub fn qkv_attention_fits(hidden: usize, heads: usize, kv: &crate::kv::KvLayout) -> bool {
        matches!(kv.head_dim, 64 | 128)
            && hidden.is_multiple_of(8)
            && hidden <= 256 * shapes::qkv_attention_chunks(kv.head_dim)
            && kv.kv_heads > 0
            && heads.is_multiple_of(kv.kv_heads)
    }

    /// `qkv_attention.rs`: q/k/v and attention for one token, one cluster of blocks a query head:
    /// `out = attention(rope(W_qkv · rmsnorm(x) + b))` over the caches, with k and v written into
    /// them at `*pos`. Only where [`Gpu::qkv_attention`] (a Hopper GPU with `cuLaunchKernelEx`)
    /// and [`Gpu::qkv_attention_fits`].
    #[allow(clippy::too_many_arguments)]
    pub fn qkv_attention_decode(
        &self,
        out: Ptr<f32>,
        k_cache: Ptr<f32>,
        v_cache: Ptr<f32>,
        x: Ptr<f32>,
        norm: Ptr<u16>,
        eps: f32,
        w_qkv: Ptr<u16>,
        bias: Ptr<f32>,
        (cos, sin): (Ptr<f32>, Ptr<f32>),
        hidden: usize,
        kv: &crate::kv::KvLayout,
        heads: usize,
        layer: usize,
        pos: Ptr<u32>,
    ) -> Result<()> {
        if !Self::qkv_attention_fits(hidden, heads, kv) {
            return Err(Error::Cuda(format!(
                "qkv_attention_decode: head_dim {} (64 or 128), hidden {hidden} (a multiple of 8, at most {}), \
                 {heads} heads over {} KV heads",
                kv.head_dim,
                256 * shapes::qkv_attention_chunks(kv.head_dim),
                kv.kv_heads
            )));
        }
        let name = if kv.head_dim == 64 { "qkv_attention_decode_64" } else { "qkv_attention_decode_128" };
        let f = self.function(name)?;
        let cluster = shapes::QKV_ATTENTION_CLUSTER as u32;
        let grid = [u32_of("heads", heads)? * cluster, 1, 1];
        let smem = u32_of("q/k/v attention shared memory", shapes::qkv_attention_shared_bytes(kv.head_dim, hidden))?;
        let (hd, h, g) = (u32_of("hidden", hidden)?, heads as u32, kv.kv_heads as u32);
        let (l, m) = (layer as u32, u32_of("max_seq", kv.max_seq)?);
        let mut args = kernel_args![out, k_cache, v_cache, x, norm, eps, w_qkv, bias, cos, sin, hd, h, g, l, m, pos];
        let block = (32 * shapes::QKV_ATTENTION_WARPS) as u32;
        unsafe { self.launch_cluster(&f, name, grid, block, smem, cluster, &mut args) }
    }
}

/// The whole-row-in-flight residual kernel for `rows × cols` on a GPU of `sms` SMs and its block
/// size, or `None` for the batched `residual_matvec_decode`: the most threads a row (256 or 128)
/// for which every row's block is resident at once (`ceil(rows / sms) · threads ≤ 2,048`),
/// each thread holding at most ten chunks. Rows of up to 1,024 columns are one batch of the
/// batched kernel already. H100 (BENCHMARKS.md step 41): the 0.5B down product (4,864
/// columns) fastest at 256 threads, the 1.5B's (8,960) at 128; 512 and 128 / 256 slower.
fn residual_inflight(rows: usize, cols: usize, sms: usize) -> Option<(&'static str, usize)> {
    if cols <= 1024 {
        return None;
    }
    let threads = [256, 128].into_iter().find(|&t| rows.div_ceil(sms) * t <= 2048)?;
    let name = match shapes::residual_chunks(cols, threads)? {
        3 => "residual_matvec_decode_3",
        5 => "residual_matvec_decode_5",
        _ => "residual_matvec_decode_10",
    };
    Some((name, threads))
}

/// The decode attention kernel for `head_dim`: its name, warps a block, and blocks an SM holds.
fn decode_attention_kernel(head_dim: usize) -> (&'static str, usize, usize) {
    match head_dim {
        64 => ("attention_decode_64", DECODE_ATTENTION_WIDE_WARPS, 1),
        _ => ("attention_decode_f32", DECODE_ATTENTION_WARPS, 2),
    }
}

impl Gpu {
    /// Most blocks per head of the decode attention (its `splits`): as many as fill every SM once,
    /// so that the ranges of a long context run in one wave.
    pub fn decode_attention_splits(&self, heads: usize, head_dim: usize) -> usize {
        (decode_attention_kernel(head_dim).2 * self.sms / heads.max(1)).clamp(1, 64)
    }
}

/// The token id packed in `lm_head_argmax`'s `best` (`None` when every logit was NaN).
pub fn decode_best(best: u64) -> Option<u32> {
    let id = u32::MAX - best as u32;
    (best != 0).then_some(id)
}

fn check_head_dim(head_dim: usize) -> Result<()> {
    if !head_dim.is_multiple_of(32) || head_dim > 256 {
        return Err(Error::Cuda(format!(
            "the attention kernels need head_dim a multiple of 32 up to 256, not {head_dim}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::attention_parts;

    /// The part counts of the Qwen2.5 shapes' prompt chunks (heads, head_dim): one part per 384
    /// rows up to 3, fewer where the scratch does not hold them (the 1.5B's 1,024-row chunks hold
    /// two, the 7B's one).
    #[test]
    fn residual_kernel_keeps_every_row_resident() {
        // H100 (132 SMs): the 0.5B down product at 256 threads, 3 chunks a thread; the 1.5B's at
        // 128 threads (12 rows an SM), 10 chunks; the 7B's (27 rows an SM) and rows of at most
        // 1,024 columns on the batched kernel.
        assert_eq!(super::residual_inflight(896, 4864, 132), Some(("residual_matvec_decode_3", 256)));
        assert_eq!(super::residual_inflight(1536, 8960, 132), Some(("residual_matvec_decode_10", 128)));
        assert_eq!(super::residual_inflight(1536, 1536, 132), Some(("residual_matvec_decode_3", 128)));
        assert_eq!(super::residual_inflight(3584, 18944, 132), None);
        assert_eq!(super::residual_inflight(896, 896, 132), None);
        // More chunks than ten a thread: batched.
        assert_eq!(super::residual_inflight(100, 8 * 256 * 11, 132), None);
        assert_eq!(super::residual_inflight(100, 8 * 256 * 10, 132), Some(("residual_matvec_decode_10", 256)));
    }

    #[test]
    fn qkv_attention_fits_the_small_shapes_only() {
        use crate::cuda::Gpu;
        use crate::kv::KvLayout;
        let kv = |kv_heads, head_dim| KvLayout { layers: 1, kv_heads, max_seq: 8, head_dim };
        assert!(Gpu::qkv_attention_fits(896, 14, &kv(2, 64)));
        assert!(Gpu::qkv_attention_fits(1536, 12, &kv(2, 128)));
        assert!(Gpu::qkv_attention_fits(128, 2, &kv(1, 128)));
        assert!(!Gpu::qkv_attention_fits(3584, 28, &kv(4, 128)), "7B rows are past 2,048 columns");
        assert!(!Gpu::qkv_attention_fits(1032, 16, &kv(2, 64)), "past 1,024 columns for head_dim 64");
        assert!(!Gpu::qkv_attention_fits(256, 4, &kv(4, 32)), "no head_dim-32 instance");
        assert!(!Gpu::qkv_attention_fits(260, 4, &kv(4, 64)), "hidden not a multiple of 8");
        assert!(!Gpu::qkv_attention_fits(256, 6, &kv(4, 64)), "heads not a multiple of KV heads");
    }

    #[test]
    fn attention_parts_follow_the_rows_and_the_scratch() {
        let counts = |heads, head_dim| [128, 512, 1024].map(|tokens| attention_parts(tokens, heads, head_dim));
        assert_eq!(counts(14, 64), [1, 2, 3], "0.5B");
        assert_eq!(counts(12, 128), [1, 2, 2], "1.5B");
        assert_eq!(counts(28, 128), [1, 2, 1], "7B");
    }
}
