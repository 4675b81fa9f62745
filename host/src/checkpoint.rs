//! Where weights come from: a Hugging Face model directory (safetensors) or a GGUF file.
//! Both are memory-mapped and read through one interface keyed by Hugging Face tensor names;
//! [`gguf_name`] is the one place that maps those names onto llama.cpp's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::quant::{GgmlType, dequantize};

/// A dense f32 tensor, row-major, `shape` slowest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The Hugging Face → GGUF tensor-name table.
pub fn gguf_name(hf: &str) -> Option<String> {
    const TOP: &[(&str, &str)] = &[
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    const LAYER: &[(&str, &str)] = &[
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.q_proj.bias", "attn_q.bias"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.k_proj.bias", "attn_k.bias"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.v_proj.bias", "attn_v.bias"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ];
    if let Some((_, g)) = TOP.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, g) = LAYER.iter().find(|(h, _)| *h == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

/// What a model path points at.
pub enum Checkpoint {
    Gguf(Gguf),
    Hf(HfDir),
}

impl Checkpoint {
    /// Opens `path`: a `.gguf` file, or a directory holding `config.json` and safetensors
    /// (a directory holding exactly one `.gguf` and no `config.json` opens that file).
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_file() {
            return Ok(Checkpoint::Gguf(Gguf::open(path)?));
        }
        if !path.join("config.json").is_file() {
            let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            return match ggufs.as_slice() {
                [one] => Ok(Checkpoint::Gguf(Gguf::open(one)?)),
                _ => Err(Error::invalid(
                    path,
                    "no model here: expected a Hugging Face directory (config.json + *.safetensors) or a .gguf file",
                )),
            };
        }
        Ok(Checkpoint::Hf(HfDir::open(path)?))
    }

    pub fn path(&self) -> &Path {
        match self {
            Checkpoint::Gguf(g) => &g.path,
            Checkpoint::Hf(h) => &h.dir,
        }
    }

    pub fn config(&self) -> Result<Config> {
        match self {
            Checkpoint::Gguf(g) => Config::from_gguf(g),
            Checkpoint::Hf(h) => {
                let p = h.dir.join("config.json");
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                Config::from_hf_json(&p, &text)
            }
        }
    }

    /// Loads a tensor by its Hugging Face name as f32, checking its shape. `Ok(None)` if absent.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        let t = match self {
            Checkpoint::Gguf(g) => {
                let Some(info) = gguf_name(name).and_then(|n| g.tensor(&n)) else {
                    return Ok(None);
                };
                check_shape(&g.path, &info.name, &info.shape(), shape)?;
                let mut data = vec![0f32; info.n_elements()];
                dequantize_par(info.ty, g.tensor_bytes(info), &mut data);
                Tensor { shape: shape.to_vec(), data }
            }
            Checkpoint::Hf(h) => match h.tensor(name, shape)? {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        Ok(Some(t))
    }
}

fn check_shape(path: &Path, name: &str, found: &[usize], want: &[usize]) -> Result<()> {
    if found != want {
        return Err(Error::invalid(path, format!("tensor `{name}` has shape {found:?}, the config implies {want:?}")));
    }
    Ok(())
}

/// Dequantises in parallel, a run of whole blocks per task.
fn dequantize_par(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    const BLOCKS_PER_TASK: usize = 4096;
    src.par_chunks(ty.block_bytes() * BLOCKS_PER_TASK)
        .zip(dst.par_chunks_mut(ty.block_len() * BLOCKS_PER_TASK))
        .for_each(|(s, d)| dequantize(ty, s, d));
}

/// A Hugging Face model directory: `config.json`, `tokenizer.json`, and `model.safetensors` or
/// shards listed in `model.safetensors.index.json`.
pub struct HfDir {
    pub dir: PathBuf,
    files: Vec<(PathBuf, memmap2::Mmap)>,
    /// tensor name → index into `files`
    index: HashMap<String, usize>,
}

impl HfDir {
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let names: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::invalid(&index_path, format!("not valid JSON: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::invalid(&index_path, "has no `weight_map` object"))?;
            let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
            files.sort();
            files.dedup();
            for f in &files {
                if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                    return Err(Error::invalid(&index_path, format!("shard name `{f}` is not a plain file name")));
                }
            }
            files.into_iter().map(|f| dir.join(f)).collect()
        } else {
            return Err(Error::invalid(
                dir,
                "has config.json but no model.safetensors or model.safetensors.index.json",
            ));
        };

        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in names {
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: read-only mapping of a file we do not modify.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let st = SafeTensors::deserialize(&map)
                .map_err(|e| Error::invalid(&path, format!("not a valid safetensors file: {e}")))?;
            for name in st.names() {
                if index.insert(name.to_string(), files.len()).is_some() {
                    return Err(Error::invalid(&path, format!("tensor `{name}` appears in more than one shard")));
                }
            }
            drop(st);
            files.push((path, map));
        }
        Ok(HfDir { dir: dir.to_path_buf(), files, index })
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        let Some(&i) = self.index.get(name) else { return Ok(None) };
        let (path, map) = &self.files[i];
        let st = SafeTensors::deserialize(map).map_err(|e| Error::invalid(path, e.to_string()))?;
        let view = st.tensor(name).map_err(|e| Error::invalid(path, e.to_string()))?;
        check_shape(path, name, view.shape(), shape)?;
        safetensor_to_f32(path, name, &view).map(Some)
    }
}

/// One safetensors tensor as f32 (bf16, f16 and f32 are accepted); `path` and `name` are for messages.
pub fn safetensor_to_f32(path: &Path, name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Tensor> {
    let bytes = view.data();
    let ty = match view.dtype() {
        Dtype::F32 => GgmlType::F32,
        Dtype::F16 => GgmlType::F16,
        Dtype::BF16 => GgmlType::BF16,
        other => {
            return Err(Error::invalid(
                path,
                format!("tensor `{name}` has dtype {other:?}; bf16, f16 and f32 are supported"),
            ));
        }
    };
    let n = view.shape().iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let n = n.filter(|&n| n.checked_mul(ty.block_bytes()) == Some(bytes.len())).ok_or_else(|| {
        Error::invalid(
            path,
            format!("tensor `{name}` holds {} bytes, which does not fit its shape {:?}", bytes.len(), view.shape()),
        )
    })?;
    let mut data = vec![0f32; n];
    dequantize_par(ty, bytes, &mut data);
    Ok(Tensor { shape: view.shape().to_vec(), data })
}
