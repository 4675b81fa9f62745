//! The CUDA forward pass: the same steps as the CPU engine, each one a kernel of `kernels-gpu`.
//!
//! Everything is allocated once in [`CudaEngine::new`]: the weights (bf16; GGUF weights were
//! dequantised at load), the KV cache for the whole context, the RoPE tables, and one scratch
//! buffer per activation (llama2.c's `RunState`), sized for a chunk of [`CHUNK`] prompt tokens.
//! A forward pass allocates nothing; it copies the start position and the token ids in (one copy)
//! and either the logits or, for greedy decoding, one token id out. No output buffer is ever an
//! input of the same kernel.
//!
//! The kernels read the position from device memory, so the one-token decode step is captured
//! once into a CUDA graph (on its first use) and replayed for every later token: one launch per
//! token instead of ~12 per layer.

use cust::memory::{AsyncCopyDestination, DeviceBuffer, DevicePointer};
use cust::sys as cu;
use half::bf16;

use super::Gpu;
use super::kernels::Ptr;
use crate::config::Config;
use crate::cpu::ops::rope_tables;
use crate::engine::{Engine, check_tokens};
use crate::error::{Error, Result};
use crate::kv::KvLayout;
use crate::weights::{Linear, Weights};

/// Prompt tokens processed per pass; longer prompts run in several passes.
pub const CHUNK: usize = 256;

struct DeviceLinear {
    weight: DeviceBuffer<u16>,
    bias: Option<DeviceBuffer<f32>>,
    rows: usize,
    cols: usize,
}

struct DeviceLayer {
    input_layernorm: DeviceBuffer<u16>,
    q_proj: DeviceLinear,
    k_proj: DeviceLinear,
    v_proj: DeviceLinear,
    o_proj: DeviceLinear,
    post_attention_layernorm: DeviceBuffer<u16>,
    gate_proj: DeviceLinear,
    up_proj: DeviceLinear,
    down_proj: DeviceLinear,
}

/// Activation buffers, each `[CHUNK, width]` f32.
struct RunState {
    x: DeviceBuffer<f32>,
    xb: DeviceBuffer<f32>,
    q: DeviceBuffer<f32>,
    k: DeviceBuffer<f32>,
    v: DeviceBuffer<f32>,
    att: DeviceBuffer<f32>,
    gate: DeviceBuffer<f32>,
    up: DeviceBuffer<f32>,
    hb: DeviceBuffer<f32>,
    /// `[pos0, id_0, id_1, …]`: the chunk's start position and token ids, copied in together.
    io: DeviceBuffer<u32>,
    logits: DeviceBuffer<f32>,
    next: DeviceBuffer<u32>,
}

/// Fields drop in declaration order: the graph and every device buffer go before `gpu`, whose
/// context they belong to (destroying a graph after its context crashes the driver).
pub struct CudaEngine {
    /// The captured one-token decode step, once it has run.
    decode_graph: Option<Graph>,
    use_graph: bool,
    cfg: Config,
    kv: KvLayout,
    embed_tokens: DeviceBuffer<u16>,
    layers: Vec<DeviceLayer>,
    norm: DeviceBuffer<u16>,
    /// `None` when tied to `embed_tokens`.
    lm_head: Option<DeviceBuffer<u16>>,
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

fn check(what: &str, r: cu::CUresult) -> Result<()> {
    if r == cu::CUresult::CUDA_SUCCESS { Ok(()) } else { Err(Error::Cuda(format!("{what}: {r:?}"))) }
}

fn to_bf16(x: &[f32]) -> Vec<u16> {
    use rayon::prelude::*;
    x.par_iter().map(|&v| bf16::from_f32(v).to_bits()).collect()
}

fn null<T: cust::memory::DeviceCopy>() -> Ptr<T> {
    DevicePointer::null()
}

impl CudaEngine {
    pub fn new(gpu: Gpu, cfg: Config, w: &Weights, max_seq: usize) -> Result<Self> {
        let up_bf16 = |x: &[f32]| gpu.upload(&to_bf16(x));
        let linear = |l: &Linear| -> Result<DeviceLinear> {
            Ok(DeviceLinear {
                weight: up_bf16(&l.weight.data)?,
                bias: l.bias.as_ref().map(|b| gpu.upload(&b.data)).transpose()?,
                rows: l.weight.shape[0],
                cols: l.weight.shape[1],
            })
        };
        let mut layers = Vec::with_capacity(w.model.layers.len());
        for l in &w.model.layers {
            layers.push(DeviceLayer {
                input_layernorm: up_bf16(&l.input_layernorm.data)?,
                q_proj: linear(&l.self_attn.q_proj)?,
                k_proj: linear(&l.self_attn.k_proj)?,
                v_proj: linear(&l.self_attn.v_proj)?,
                o_proj: linear(&l.self_attn.o_proj)?,
                post_attention_layernorm: up_bf16(&l.post_attention_layernorm.data)?,
                gate_proj: linear(&l.mlp.gate_proj)?,
                up_proj: linear(&l.mlp.up_proj)?,
                down_proj: linear(&l.mlp.down_proj)?,
            });
        }
        let kv = KvLayout {
            layers: cfg.num_hidden_layers,
            kv_heads: cfg.num_key_value_heads,
            max_seq,
            head_dim: cfg.head_dim,
        };
        let (cos, sin) = rope_tables(max_seq, cfg.head_dim, cfg.rope_theta);
        let zeros = |n: usize| gpu.upload(&vec![0f32; n]);
        let s = RunState {
            x: gpu.alloc(CHUNK * cfg.hidden_size)?,
            xb: gpu.alloc(CHUNK * cfg.hidden_size)?,
            q: gpu.alloc(CHUNK * cfg.q_dim())?,
            k: gpu.alloc(CHUNK * cfg.kv_dim())?,
            v: gpu.alloc(CHUNK * cfg.kv_dim())?,
            att: gpu.alloc(CHUNK * cfg.q_dim())?,
            gate: gpu.alloc(CHUNK * cfg.intermediate_size)?,
            up: gpu.alloc(CHUNK * cfg.intermediate_size)?,
            hb: gpu.alloc(CHUNK * cfg.intermediate_size)?,
            io: gpu.alloc(CHUNK + 1)?,
            logits: gpu.alloc(cfg.vocab_size)?,
            next: gpu.alloc(1)?,
        };
        let engine = CudaEngine {
            embed_tokens: up_bf16(&w.model.embed_tokens.data)?,
            layers,
            norm: up_bf16(&w.model.norm.data)?,
            lm_head: w.lm_head.as_ref().map(|t| up_bf16(&t.data)).transpose()?,
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
        for chunk in tokens.chunks(CHUNK) {
            self.run_chunk(chunk, pos)?;
            pos += chunk.len();
        }
        Ok(())
    }

    fn run_chunk(&mut self, tokens: &[u32], pos0: usize) -> Result<()> {
        let t = tokens.len();
        let mut io = Vec::with_capacity(t + 1);
        io.push(pos0 as u32);
        io.extend_from_slice(tokens);
        // Ordered after the previous step's kernels (which read `io`) by the stream. Pageable host
        // memory is staged before the call returns, so `io` may be dropped right after.
        super::cuda("copying the position and token ids", unsafe {
            self.s.io.index(..t + 1).async_copy_from(&io[..], &self.gpu.stream)
        })?;
        if t > 1 || !self.use_graph {
            return self.launch_step(t);
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
        let launched = self.launch_step(1);
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
    /// already in `s.io`. Only launches: it can be captured into a graph.
    fn launch_step(&self, t: usize) -> Result<()> {
        let (g, cfg, s, kv) = (&self.gpu, &self.cfg, &self.s, &self.kv);
        let h = cfg.hidden_size;
        let p = |b: &DeviceBuffer<f32>| b.as_device_ptr();
        let pos0 = s.io.as_device_ptr();
        let ids = unsafe { pos0.add(1) };
        let lin = |out: Ptr<f32>, x: Ptr<f32>, l: &DeviceLinear, accumulate: bool| {
            let bias = l.bias.as_ref().map_or(null(), |b| b.as_device_ptr());
            g.matmul(out, x, l.weight.as_device_ptr(), bias, l.rows, l.cols, t, accumulate)
        };

        // x = embed(tokens)                                      [t, h]
        g.embedding(p(&s.x), self.embed_tokens.as_device_ptr(), ids, t, h, cfg.vocab_size)?;
        for (l, layer) in self.layers.iter().enumerate() {
            // xb = norm(x); q, k, v = xb·Wqᵀ + bq, …               [t, q_dim], [t, kv_dim] ×2
            g.rmsnorm(p(&s.xb), p(&s.x), layer.input_layernorm.as_device_ptr(), t, h, cfg.rms_norm_eps)?;
            lin(p(&s.q), p(&s.xb), &layer.q_proj, false)?;
            lin(p(&s.k), p(&s.xb), &layer.k_proj, false)?;
            lin(p(&s.v), p(&s.xb), &layer.v_proj, false)?;
            // rotate q in place; rotate k into the K cache, copy v into the V cache
            g.rope_kv_write(
                p(&s.q),
                p(&s.k),
                p(&s.v),
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
            g.attention(
                p(&s.att),
                p(&s.q),
                p(&self.k_cache),
                p(&self.v_cache),
                kv,
                cfg.num_attention_heads,
                l,
                pos0,
                t,
            )?;
            lin(p(&s.x), p(&s.att), &layer.o_proj, true)?;
            // xb = norm(x); x += (silu(xb·Wgᵀ) ⊙ xb·Wuᵀ)·Wdᵀ          [t, inter] → [t, h]
            g.rmsnorm(p(&s.xb), p(&s.x), layer.post_attention_layernorm.as_device_ptr(), t, h, cfg.rms_norm_eps)?;
            lin(p(&s.gate), p(&s.xb), &layer.gate_proj, false)?;
            lin(p(&s.up), p(&s.xb), &layer.up_proj, false)?;
            g.swiglu(p(&s.hb), p(&s.gate), p(&s.up), t * cfg.intermediate_size)?;
            lin(p(&s.x), p(&s.hb), &layer.down_proj, true)?;
        }
        // logits = norm(x[last])·W_lmᵀ                               [vocab]
        let last = unsafe { p(&s.x).add((t - 1) * h) };
        g.rmsnorm(p(&s.xb), last, self.norm.as_device_ptr(), 1, h, cfg.rms_norm_eps)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        g.matmul(p(&s.logits), p(&s.xb), head.as_device_ptr(), null(), cfg.vocab_size, h, 1, false)
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
        self.gpu.argmax(self.s.next.as_device_ptr(), self.s.logits.as_device_ptr(), self.cfg.vocab_size)?;
        let id = self.gpu.download(&self.s.next)?[0];
        if id as usize >= self.cfg.vocab_size {
            return Err(Error::Cuda("the logits are all NaN".into()));
        }
        Ok(id)
    }
}
