//! The CUDA forward pass: the same steps as the CPU engine, each one a kernel of `kernels-gpu`.
//!
//! Everything is allocated once in [`CudaEngine::new`]: the weights (bf16; GGUF weights were
//! dequantised at load), the KV cache for the whole context, the RoPE tables, and the activation
//! buffers (llama2.c's `RunState`; those of the attention half inside the MLP's, which is not in
//! use then), sized for a chunk of [`CHUNK`] prompt tokens.
//! A forward pass allocates nothing; it copies the start position and the token ids in (one copy)
//! and either the logits or, for greedy decoding, one token id out. No output buffer is ever an
//! input of the same kernel.
//!
//! A prompt chunk runs the general kernels, about one per step of the CPU engine: tensor-core
//! products (`matmul.rs`; q, k and v as one, gate and up as one with SwiGLU in its epilogue, the
//! residual adds in the output and down products'), RoPE + cache write, flash attention
//! (`flash_attention.rs`). A one-token decode
//! step runs the fused ones (`decode.rs`, `attention_decode_*`): per layer RMSNorm + q/k/v +
//! RoPE + cache write in one launch, split-sequence attention, the output product with the residual
//! add, RMSNorm + gate/up + SwiGLU, and the down product with the residual add; the LM head takes
//! the argmax as it goes, and `greedy_advance` leaves the chosen token and the next position in
//! device memory. The kernels read the position and token from device memory, so that step is
//! captured once into a CUDA graph (when the engine is built) and replayed for every token, and
//! greedy steps run back to back without the host ([`Engine::decode_greedy`]).

use cust::memory::{AsyncCopyDestination, DeviceBuffer, DevicePointer};
use cust::sys as cu;
use half::bf16;

use super::kernels::{Epilogue, MatmulScratch, Ptr};
use super::{Gpu, check};
use crate::config::Config;
use crate::cpu::ops::rope_tables;
use crate::engine::{Engine, check_tokens};
use crate::error::{Error, Result};
use crate::kv::KvLayout;
use crate::weights::{Linear, Weights};

/// Prompt tokens processed per pass (fewer where the context is shorter); longer prompts run in
/// several passes. 2,048: a 2,048-token prompt in one pass fills the GPU's last waves better than
/// two of 1,024 (H100, 0.5B: 13.96–14.04 → 11.69–11.77 ms, BENCHMARKS.md step 38), and with the
/// attention's buffers inside the MLP's ([`RunState`]) the activations stay within 8 % of the
/// 0.5B model's weights and cache (1,076 MiB of device memory against 997).
pub const CHUNK: usize = 2048;

/// One decoder layer: pointers into the engine's one weight allocation (bf16) and one bias
/// allocation (f32). The q, k and v weights are stored stacked (`[q_dim + 2·kv_dim, hidden]`,
/// biases likewise), and gate and up as one `[2·intermediate, hidden]` matrix with their rows
/// interleaved (gate row `r` at `2r`, up row `r` at `2r + 1`): each is read as one matrix, the
/// gate/up one by products that take its rows in pairs.
struct DeviceLayer {
    input_layernorm: Ptr<u16>,
    qkv: Ptr<u16>,
    qkv_bias: Ptr<f32>,
    o_proj: Ptr<u16>,
    post_attention_layernorm: Ptr<u16>,
    gate_up: Ptr<u16>,
    down_proj: Ptr<u16>,
}

/// Tensors laid out back to back for one device allocation. The driver rounds every allocation
/// up to whole 2 MiB pages, so one allocation per tensor wasted ~100 MiB on the 0.5B model
/// (a tenth of its weights).
#[derive(Default)]
struct Packing<'a> {
    parts: Vec<(usize, Part<'a>)>,
    len: usize,
}

/// One tensor of a [`Packing`]: as it is, or two `[rows, cols]` matrices with their rows
/// interleaved (row `r` of the first at `2r`, of the second at `2r + 1`).
enum Part<'a> {
    Plain(&'a [f32]),
    RowPairs(&'a [f32], &'a [f32], usize),
}

impl<'a> Packing<'a> {
    /// Places `tensors` back to back (a stack) at the next 256-byte boundary; returns their offset.
    fn add(&mut self, tensors: &[&'a [f32]]) -> usize {
        let start = self.len.next_multiple_of(128);
        let mut at = start;
        for t in tensors {
            self.parts.push((at, Part::Plain(t)));
            at += t.len();
        }
        self.len = at;
        start
    }

    /// Places `a` and `b` (`[rows, cols]` each) with their rows interleaved; returns the offset.
    fn add_row_pairs(&mut self, a: &'a [f32], b: &'a [f32], cols: usize) -> usize {
        let start = self.len.next_multiple_of(128);
        self.parts.push((start, Part::RowPairs(a, b, cols)));
        self.len = start + a.len() + b.len();
        start
    }

    /// One allocation holding every tensor, each element converted by `convert` (a tensor at a
    /// time, its elements in parallel; row pairs interleaved as they are converted).
    fn upload<T: cust::memory::DeviceCopy + Default + Clone + Send + Sync>(
        &self,
        gpu: &Gpu,
        convert: impl Fn(f32) -> T + Sync,
    ) -> Result<DeviceBuffer<T>> {
        use rayon::prelude::*;
        let buf = gpu.alloc::<T>(self.len)?;
        for (at, part) in &self.parts {
            let converted: Vec<T> = match part {
                Part::Plain(t) => t.par_iter().map(|&v| convert(v)).collect(),
                Part::RowPairs(a, b, cols) => interleave_rows(a, b, *cols, &convert),
            };
            gpu.upload_into(&buf, *at, &converted)?;
        }
        Ok(buf)
    }
}

/// `a` and `b` (`[rows, cols]` each, `cols > 0`) as one `[2·rows, cols]` matrix, row `r` of `a`
/// at `2r` and of `b` at `2r + 1`, each element converted by `convert` (rows in parallel).
fn interleave_rows<T: Default + Clone + Send + Sync>(
    a: &[f32],
    b: &[f32],
    cols: usize,
    convert: &(impl Fn(f32) -> T + Sync),
) -> Vec<T> {
    use rayon::prelude::*;
    let mut pairs = vec![T::default(); a.len() + b.len()];
    pairs.par_chunks_mut(2 * cols).enumerate().for_each(|(r, pair)| {
        let (first, second) = pair.split_at_mut(cols);
        let rows = r * cols..(r + 1) * cols;
        first.iter_mut().zip(&a[rows.clone()]).for_each(|(o, &v)| *o = convert(v));
        second.iter_mut().zip(&b[rows]).for_each(|(o, &v)| *o = convert(v));
    });
    pairs
}

/// Activation buffers, each `[chunk, width]` f32 (`chunk = min(CHUNK, max_seq)`).
struct RunState {
    /// Rows of each prompt-token buffer.
    chunk: usize,
    x: DeviceBuffer<f32>,
    xb: DeviceBuffer<f32>,
    /// A prompt chunk's `silu(gate) ⊙ up`, `[chunk, intermediate]`, written by the gate/up product
    /// and read by the down product. Between those the layer's attention half keeps its buffers
    /// in the same memory (see [`RunState::qkv`]): one allocation instead of four, the largest
    /// share of the activations.
    mlp: DeviceBuffer<f32>,
    /// A decode step's `silu(gate) ⊙ up` (one token).
    hb: DeviceBuffer<f32>,
    /// `[pos0, id_0, id_1, …]`: the chunk's start position and token ids, copied in together.
    io: DeviceBuffer<u32>,
    logits: DeviceBuffer<f32>,
    /// The greedy choice, packed as `lm_head_argmax` leaves it.
    best: DeviceBuffer<u64>,
    /// `[max_seq]`: the token chosen after each decode step's position (`greedy_advance`).
    chosen: DeviceBuffer<u32>,
    /// Split-sequence attention scratch: `[heads, splits, head_dim + 2]` partial results and one
    /// arrival counter per head.
    partial: DeviceBuffer<f32>,
    counters: DeviceBuffer<u32>,
    /// Most blocks per head of the decode attention (long contexts): as many as one wave of its
    /// blocks holds over all heads.
    splits: usize,
    /// Split-K scratch of the prompt products.
    products: MatmulScratch,
    /// Where [`RunState::q`] starts in `mlp`.
    q_at: usize,
}

impl RunState {
    /// Floats of `mlp`: the gate/up output, or the attention half's `qkv` and `q` side by side,
    /// whichever is larger.
    fn mlp_len(chunk: usize, cfg: &Config) -> usize {
        chunk * cfg.intermediate_size.max(2 * cfg.q_dim() + 2 * cfg.kv_dim())
    }
    /// One product's queries, keys and values side by side, `[chunk, q_dim + 2·kv_dim]`, at the
    /// start of `mlp`: written by the q/k/v product, read by `rope_kv_write`.
    fn qkv(&self) -> Ptr<f32> {
        self.mlp.as_device_ptr()
    }
    /// The rotated queries, `[chunk, q_dim]`, after `qkv` in `mlp`: written by `rope_kv_write`
    /// (or the decode q/k/v kernel), read by the attention.
    fn q(&self) -> Ptr<f32> {
        unsafe { self.mlp.as_device_ptr().add(self.q_at) }
    }
    /// The attention's output, `[chunk, q_dim]`, at the start of `mlp` over `qkv` (no longer
    /// read once the queries are rotated): written by the attention, read by the output product,
    /// before the gate/up product writes `mlp`.
    fn att(&self) -> Ptr<f32> {
        self.mlp.as_device_ptr()
    }
}

/// Fields drop in declaration order: the graph and every device buffer go before `gpu`, whose
/// context they belong to (destroying a graph after its context crashes the driver).
pub struct CudaEngine {
    /// The captured one-token decode step (captured when the engine is built).
    decode_graph: Option<Graph>,
    use_graph: bool,
    cfg: Config,
    kv: KvLayout,
    /// Every weight, bf16, in one allocation; the pointers below point into it.
    _weights: DeviceBuffer<u16>,
    /// The q/k/v biases, f32, in one allocation.
    _biases: DeviceBuffer<f32>,
    embed_tokens: Ptr<u16>,
    layers: Vec<DeviceLayer>,
    norm: Ptr<u16>,
    /// `embed_tokens` when tied.
    lm_head: Ptr<u16>,
    k_cache: DeviceBuffer<f32>,
    v_cache: DeviceBuffer<f32>,
    rope_cos: DeviceBuffer<f32>,
    rope_sin: DeviceBuffer<f32>,
    s: RunState,
    gpu: Gpu,
}

/// An instantiated CUDA graph (driver API through `cust::sys`; cust 0.3 has no safe wrapper).
struct Graph {
    graph: cu::CUgraph,
    exec: cu::CUgraphExec,
}

impl Drop for Graph {
    fn drop(&mut self) {
        unsafe {
            cu::cuGraphExecDestroy(self.exec);
            cu::cuGraphDestroy(self.graph);
        }
    }
}

fn to_bf16(v: f32) -> u16 {
    bf16::from_f32(v).to_bits()
}

fn linear_bias(l: &Linear) -> Option<&[f32]> {
    l.bias.as_ref().map(|b| &b.data[..])
}

fn null<T: cust::memory::DeviceCopy>() -> Ptr<T> {
    DevicePointer::null()
}

impl CudaEngine {
    pub fn new(gpu: Gpu, cfg: Config, w: &Weights, max_seq: usize) -> Result<Self> {
        if !cfg.hidden_size.is_multiple_of(8) || !cfg.intermediate_size.is_multiple_of(8) {
            return Err(Error::Cuda(format!(
                "the CUDA kernels read weights 8 at a time and need hidden_size ({}) and intermediate_size ({}) \
                 to be multiples of 8; use --device cpu for this model",
                cfg.hidden_size, cfg.intermediate_size
            )));
        }
        // Lay every tensor out in one bf16 allocation (and the biases in one f32 allocation),
        // then upload and take pointers into them.
        let (mut wp, mut bp) = (Packing::default(), Packing::default());
        let mut offsets = Vec::with_capacity(w.model.layers.len());
        for l in &w.model.layers {
            let (a, m) = (&l.self_attn, &l.mlp);
            let bias = |l| linear_bias(l).ok_or_else(|| Error::Cuda("q/k/v projections without biases".into()));
            if [&a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj].iter().any(|l| l.bias.is_some()) {
                return Err(Error::Cuda("the CUDA engine has no o/gate/up/down biases (Qwen2 has none)".into()));
            }
            offsets.push([
                wp.add(&[&l.input_layernorm.data]),
                wp.add(&[&a.q_proj.weight.data, &a.k_proj.weight.data, &a.v_proj.weight.data]),
                bp.add(&[bias(&a.q_proj)?, bias(&a.k_proj)?, bias(&a.v_proj)?]),
                wp.add(&[&a.o_proj.weight.data]),
                wp.add(&[&l.post_attention_layernorm.data]),
                // `Weights::load` checked both to be `[intermediate, hidden]`
                wp.add_row_pairs(&m.gate_proj.weight.data, &m.up_proj.weight.data, cfg.hidden_size),
                wp.add(&[&m.down_proj.weight.data]),
            ]);
        }
        let embed_at = wp.add(&[&w.model.embed_tokens.data]);
        let norm_at = wp.add(&[&w.model.norm.data]);
        let head_at = w.lm_head.as_ref().map(|t| wp.add(&[&t.data])).unwrap_or(embed_at);
        let weights = wp.upload(&gpu, to_bf16)?;
        let biases = bp.upload(&gpu, |v| v)?;
        let wat = |off: usize| unsafe { weights.as_device_ptr().add(off) };
        let bat = |off: usize| unsafe { biases.as_device_ptr().add(off) };
        let layers = offsets
            .iter()
            .map(|o| DeviceLayer {
                input_layernorm: wat(o[0]),
                qkv: wat(o[1]),
                qkv_bias: bat(o[2]),
                o_proj: wat(o[3]),
                post_attention_layernorm: wat(o[4]),
                gate_up: wat(o[5]),
                down_proj: wat(o[6]),
            })
            .collect();
        let kv = KvLayout {
            layers: cfg.num_hidden_layers,
            kv_heads: cfg.num_key_value_heads,
            max_seq,
            head_dim: cfg.head_dim,
        };
        let (cos, sin) = rope_tables(max_seq, cfg.head_dim, cfg.rope_theta);
        let zeros = |n: usize| gpu.upload(&vec![0f32; n]);
        let heads = cfg.num_attention_heads;
        let splits = gpu.decode_attention_splits(heads, cfg.head_dim);
        let chunk = CHUNK.min(max_seq).max(1);
        let s = RunState {
            chunk,
            x: gpu.alloc(chunk * cfg.hidden_size)?,
            xb: gpu.alloc(chunk * cfg.hidden_size)?,
            mlp: gpu.alloc(RunState::mlp_len(chunk, &cfg))?,
            hb: gpu.alloc(cfg.intermediate_size)?,
            io: gpu.alloc(chunk + 1)?,
            logits: gpu.alloc(cfg.vocab_size)?,
            best: gpu.alloc(1)?,
            chosen: gpu.alloc(max_seq)?,
            partial: gpu.alloc(heads * splits * (cfg.head_dim + 2))?,
            counters: gpu.upload(&vec![0u32; heads])?,
            splits,
            products: MatmulScratch::new(&gpu)?,
            q_at: chunk * (cfg.q_dim() + 2 * cfg.kv_dim()),
        };
        let mut engine = CudaEngine {
            embed_tokens: wat(embed_at),
            layers,
            norm: wat(norm_at),
            lm_head: wat(head_at),
            _weights: weights,
            _biases: biases,
            k_cache: zeros(kv.len())?,
            v_cache: zeros(kv.len())?,
            rope_cos: gpu.upload(&cos)?,
            rope_sin: gpu.upload(&sin)?,
            s,
            kv,
            cfg,
            gpu,
            decode_graph: None,
            use_graph: std::env::var_os("QWEN_RS_NO_CUDA_GRAPH").is_none(),
        };
        if engine.use_graph {
            // Captured and uploaded now rather than at the first decode step, whose time (and the
            // first answer's tok/s) they would otherwise add to.
            let graph = engine.capture_decode_step()?;
            check("cuGraphUpload", unsafe { cu::cuGraphUpload(graph.exec, engine.gpu.stream.as_inner()) })?;
            engine.decode_graph = Some(graph);
        }
        engine.gpu.synchronize()?;
        Ok(engine)
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Turns the captured decode graph on or off (`QWEN_RS_NO_CUDA_GRAPH` set turns it off at start).
    pub fn set_use_graph(&mut self, on: bool) {
        self.use_graph = on;
    }

    /// Runs `tokens` at `start..`, leaving the last token's logits in `s.logits` (on the device).
    fn run(&mut self, tokens: &[u32], start: usize) -> Result<()> {
        check_tokens(&self.cfg, tokens, start, self.kv.max_seq)?;
        let mut pos = start;
        let chunks = tokens.len().div_ceil(self.s.chunk);
        for (i, chunk) in tokens.chunks(self.s.chunk).enumerate() {
            self.run_chunk(chunk, pos, i + 1 == chunks)?;
            pos += chunk.len();
        }
        Ok(())
    }

    /// One chunk of prompt tokens, or one decode step; `last`: the LM head runs after it.
    fn run_chunk(&mut self, tokens: &[u32], pos0: usize, last: bool) -> Result<()> {
        self.copy_io(tokens, pos0)?;
        if tokens.len() > 1 {
            return self.launch_step(tokens.len(), last);
        }
        self.replay_decode_step()
    }

    /// `s.io = [pos0, tokens…]`, ordered after the previous step's kernels (which read `io`) by
    /// the stream. Pageable host memory is staged before the call returns.
    fn copy_io(&self, tokens: &[u32], pos0: usize) -> Result<()> {
        let mut io = Vec::with_capacity(tokens.len() + 1);
        io.push(pos0 as u32);
        io.extend_from_slice(tokens);
        super::cuda("copying the position and token ids", unsafe {
            self.s.io.index(..io.len()).async_copy_from(&io[..], &self.gpu.stream)
        })
    }

    /// A token the device chose, or the error of a step whose logits were all NaN (no id in
    /// `best`, or the `u32::MAX` that `greedy_advance` leaves for it).
    fn chosen_token(&self, id: Option<u32>) -> Result<u32> {
        match id {
            Some(id) if (id as usize) < self.cfg.vocab_size => Ok(id),
            _ => Err(Error::Cuda("the logits are all NaN".into())),
        }
    }

    /// One decode step with its position and token already in `s.io`: the captured graph
    /// (captured when the engine was built, or here if the graph was off then), or the launches
    /// themselves without it.
    fn replay_decode_step(&mut self) -> Result<()> {
        if !self.use_graph {
            return self.launch_step(1, true);
        }
        if self.decode_graph.is_none() {
            self.decode_graph = Some(self.capture_decode_step()?);
        }
        let exec = self.decode_graph.as_ref().map(|g| g.exec).unwrap_or(std::ptr::null_mut());
        check("cuGraphLaunch", unsafe { cu::cuGraphLaunch(exec, self.gpu.stream.as_inner()) })
    }

    /// Records the launches of a one-token step into a graph and instantiates it.
    fn capture_decode_step(&self) -> Result<Graph> {
        let stream = self.gpu.stream.as_inner();
        let mode = cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
        check("cuStreamBeginCapture", unsafe { cu::cuStreamBeginCapture_v2(stream, mode) })?;
        let launched = self.launch_step(1, true);
        let mut graph: cu::CUgraph = std::ptr::null_mut();
        let ended = check("cuStreamEndCapture", unsafe { cu::cuStreamEndCapture(stream, &mut graph) });
        launched?;
        ended?;
        let mut exec: cu::CUgraphExec = std::ptr::null_mut();
        if let Err(e) = check("cuGraphInstantiate", unsafe { cu::cuGraphInstantiateWithFlags(&mut exec, graph, 0) }) {
            unsafe { cu::cuGraphDestroy(graph) };
            return Err(e);
        }
        Ok(Graph { graph, exec })
    }

    /// The kernel launches of one forward pass over `t` tokens whose start position and ids are
    /// already in `s.io`, ending (with `head`) with the last token's logits in `s.logits` and its
    /// argmax in `s.best`. Only launches (and one memset): it can be captured into a graph.
    fn launch_step(&self, t: usize, head: bool) -> Result<()> {
        let (g, cfg, s) = (&self.gpu, &self.cfg, &self.s);
        let h = cfg.hidden_size;
        let p = |b: &DeviceBuffer<f32>| b.as_device_ptr();
        let ids = unsafe { s.io.as_device_ptr().add(1) };

        // best = 0 for lm_head_argmax (first, so that no kernel launched with PDL follows a memset)
        let best = s.best.as_device_ptr();
        if head {
            check("cuMemsetD32Async", unsafe { cu::cuMemsetD32Async(best.as_raw(), 0, 2, g.stream.as_inner()) })?;
        }
        // x = embed(tokens)                                      [t, h]
        g.embedding(p(&s.x), self.embed_tokens, ids, t, h, cfg.vocab_size)?;
        for (l, layer) in self.layers.iter().enumerate() {
            if t == 1 {
                self.decode_layer(l, layer)?;
            } else {
                self.prompt_layer(t, l, layer)?;
            }
        }
        if !head {
            return Ok(());
        }
        // logits = norm(x[last])·W_lmᵀ, best = argmax               [vocab]
        let last = unsafe { p(&s.x).add((t - 1) * h) };
        g.lm_head_argmax(p(&s.logits), best, last, self.norm, cfg.rms_norm_eps, self.lm_head, cfg.vocab_size, h)?;
        if t > 1 {
            return Ok(());
        }
        // chosen[pos] = argmax; io = [pos + 1, argmax]: the next decode step's input
        g.greedy_advance(s.io.as_device_ptr(), s.chosen.as_device_ptr(), best, self.kv.max_seq)
    }

    /// One layer for one token, through the fused decode kernels (four launches; five where
    /// `qkv_attention_decode` is not used).
    fn decode_layer(&self, l: usize, layer: &DeviceLayer) -> Result<()> {
        let (g, cfg, s, kv) = (&self.gpu, &self.cfg, &self.s, &self.kv);
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let p = |b: &DeviceBuffer<f32>| b.as_device_ptr();
        let pos = s.io.as_device_ptr();
        let heads = cfg.num_attention_heads;
        if g.qkv_attention && Gpu::qkv_attention_fits(h, heads, kv) {
            // att = attention(rope(Wqkv·norm(x) + b), cache[..=pos]); K/V cache[pos] written
            g.qkv_attention_decode(
                s.att(),
                p(&self.k_cache),
                p(&self.v_cache),
                p(&s.x),
                layer.input_layernorm,
                eps,
                layer.qkv,
                layer.qkv_bias,
                (p(&self.rope_cos), p(&self.rope_sin)),
                h,
                kv,
                heads,
                l,
                pos,
            )?;
        } else {
            self.decode_qkv_attention(l, layer)?;
        }
        // x += att·Woᵀ
        g.residual_matvec_decode(p(&s.x), s.att(), layer.o_proj, h, cfg.q_dim())?;
        // hb = silu(Wg·norm(x)) ⊙ Wu·norm(x); x += hb·Wdᵀ
        let (w_gu, post_norm) = (layer.gate_up, layer.post_attention_layernorm);
        g.gate_up_silu_decode(p(&s.hb), p(&s.x), post_norm, eps, w_gu, cfg.intermediate_size, h)?;
        g.residual_matvec_decode(p(&s.x), p(&s.hb), layer.down_proj, h, cfg.intermediate_size)
    }

    /// A decode step's q/k/v and attention in two kernels (where `qkv_attention_decode` is not
    /// used): q/k/v with RoPE and the cache write, then split-sequence attention.
    fn decode_qkv_attention(&self, l: usize, layer: &DeviceLayer) -> Result<()> {
        let (g, cfg, s, kv) = (&self.gpu, &self.cfg, &self.s, &self.kv);
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let p = |b: &DeviceBuffer<f32>| b.as_device_ptr();
        let pos = s.io.as_device_ptr();
        let heads = cfg.num_attention_heads;
        // q = rope(Wq·norm(x) + bq); K/V cache[pos] = rope(Wk·norm(x) + bk), Wv·norm(x) + bv
        g.qkv_rope_decode(
            s.q(),
            p(&self.k_cache),
            p(&self.v_cache),
            p(&s.x),
            layer.input_layernorm,
            eps,
            layer.qkv,
            layer.qkv_bias,
            p(&self.rope_cos),
            p(&self.rope_sin),
            h,
            kv,
            heads,
            l,
            pos,
        )?;
        // att = attention(q, cache[..=pos])
        g.attention_decode(
            s.att(),
            p(&s.partial),
            s.counters.as_device_ptr(),
            s.q(),
            p(&self.k_cache),
            p(&self.v_cache),
            kv,
            heads,
            l,
            pos,
            s.splits,
        )
    }

    /// One layer for a chunk of `t` prompt tokens, one general kernel per step.
    fn prompt_layer(&self, t: usize, l: usize, layer: &DeviceLayer) -> Result<()> {
        let (g, cfg, s, kv) = (&self.gpu, &self.cfg, &self.s, &self.kv);
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let p = |b: &DeviceBuffer<f32>| b.as_device_ptr();
        let pos0 = s.io.as_device_ptr();
        // a product; `after_norm`: it follows an RMSNorm, and may start while that finishes (PDL)
        let mm = |out: Ptr<f32>, x: Ptr<f32>, w: Ptr<u16>, bias: Ptr<f32>, rows, cols, e: Epilogue, after_norm| {
            g.matmul(&s.products, out, x, w, bias, rows, cols, t, e, after_norm)
        };

        // xb = norm(x); [q k v] = xb·[Wq Wk Wv]ᵀ + [bq bk bv]    [t, q_dim + 2·kv_dim]
        g.rmsnorm(p(&s.xb), p(&s.x), layer.input_layernorm, t, h, cfg.rms_norm_eps)?;
        mm(s.qkv(), p(&s.xb), layer.qkv, layer.qkv_bias, qd + 2 * kvd, h, Epilogue::Store, true)?;
        // rotate the queries into q, the keys into the K cache; copy the values into the V cache
        g.rope_kv_write(
            s.q(),
            s.qkv(),
            p(&self.k_cache),
            p(&self.v_cache),
            p(&self.rope_cos),
            p(&self.rope_sin),
            kv,
            cfg.num_attention_heads,
            l,
            pos0,
            t,
        )?;
        // att = attention(q, cache); x += att·Woᵀ                [t, q_dim] → [t, h]
        let (q, att, heads) = (s.q(), s.att(), cfg.num_attention_heads);
        g.attention(&s.products, att, q, p(&self.k_cache), p(&self.v_cache), kv, heads, l, pos0, t, None)?;
        mm(p(&s.x), s.att(), layer.o_proj, null(), h, qd, Epilogue::Accumulate, false)?;
        // xb = norm(x); mlp = silu(xb·Wgᵀ) ⊙ xb·Wuᵀ; x += mlp·Wdᵀ   [t, inter] → [t, h]
        g.rmsnorm(p(&s.xb), p(&s.x), layer.post_attention_layernorm, t, h, cfg.rms_norm_eps)?;
        mm(p(&s.mlp), p(&s.xb), layer.gate_up, null(), 2 * inter, h, Epilogue::SwiGlu, true)?;
        mm(p(&s.x), p(&s.mlp), layer.down_proj, null(), h, inter, Epilogue::Accumulate, false)
    }
}

impl Engine for CudaEngine {
    fn name(&self) -> String {
        format!("cuda ({}, {})", self.gpu.name, self.gpu.arch)
    }
    fn max_seq(&self) -> usize {
        self.kv.max_seq
    }
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>> {
        self.run(tokens, start)?;
        self.gpu.download(&self.s.logits)
    }
    fn forward_greedy(&mut self, tokens: &[u32], start: usize) -> Result<u32> {
        self.run(tokens, start)?;
        self.chosen_token(super::kernels::decode_best(self.gpu.download(&self.s.best)?[0]))
    }
    /// The steps one after another on the stream, each taking its position and token from the
    /// step before (`greedy_advance`), the host waiting once at the end: the ids and position go
    /// in once, the `n` chosen ids come back once.
    fn decode_greedy(&mut self, first: u32, start: usize, n: usize) -> Result<Vec<u32>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        check_tokens(&self.cfg, &[first], start + n - 1, self.kv.max_seq)?;
        // [start, first] goes in once; each later step finds [pos, id] left by the step before.
        self.copy_io(&[first], start)?;
        for _ in 0..n {
            self.replay_decode_step()?;
        }
        let mut ids = vec![0u32; n];
        // SAFETY: `ids` outlives the copy: the stream is synchronised before returning.
        super::cuda("copying from the device", unsafe {
            self.s.chosen.index(start..start + n).async_copy_to(&mut ids[..], &self.gpu.stream)
        })?;
        self.gpu.synchronize()?;
        ids.into_iter().map(|id| self.chosen_token(Some(id))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{interleave_rows, to_bf16};

    #[test]
    fn gate_and_up_rows_interleave() {
        // gate rows [1 2 3], [4 5 6]; up rows [10 20 30], [40 50 60] → gate 0, up 0, gate 1, up 1.
        let (gate, up) = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        let got = interleave_rows(&gate, &up, 3, &|v| v);
        assert_eq!(got, [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 4.0, 5.0, 6.0, 40.0, 50.0, 60.0]);
        // and through the bf16 conversion the weights take: 1.5 and -2 are exact in bf16
        assert_eq!(interleave_rows(&[1.5], &[-2.0], 1, &to_bf16), [0x3fc0, 0xc000]);
    }
}
