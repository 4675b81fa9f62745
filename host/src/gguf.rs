//! GGUF (v2 and v3) reader over a memory-mapped file.
//!
//! Layout (all little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata
//! count; then the metadata (`string` key, `u32` value type, value); then one info per tensor
//! (`string` name, `u32` n_dims, `u64` dims[n_dims] fastest first, `u32` ggml type, `u64` offset);
//! then padding to `general.alignment` (default 32) and the tensor data, each tensor at its offset
//! from the start of the data section.
//!
//! Hostile files are expected. Every read is bounds-checked against the mapping, every declared
//! count is checked against the bytes that remain before anything is allocated for it (so no
//! header can make the reader allocate more than the file holds), and every tensor's extent is
//! checked against the data section. Errors name the file and what was wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::quant::GgmlType;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is the fastest-varying (the row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte range inside the mapping (already validated).
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
    /// Shape in row-major order, slowest first (`[rows, cols]` for a matrix), as in safetensors.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file: its metadata, its tensor table and the mapping the tensors point into.
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    data: Bytes,
}

/// The file's bytes: a memory map for real files, an owned buffer for in-memory parsing (fuzzing, tests).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

const MAX_NESTING: usize = 4;
const MAX_DIMS: u32 = 4;

impl Gguf {
    /// Memory-maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only; a file truncated underneath us can still fault, which is
        // the same contract every mmap-based loader (llama.cpp, safetensors) accepts.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// Parses a GGUF held in memory; `path` is only used in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(path, Bytes::Owned(bytes))
    }

    fn parse(path: &Path, data: Bytes) -> Result<Self> {
        let mut r = Reader { buf: &data, pos: 0, path };
        let magic = r.bytes(4)?;
        if magic != b"GGUF" {
            return Err(Error::invalid(path, "not a GGUF file (the first 4 bytes are not `GGUF`)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::invalid(path, format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor info
        // at least 8 + 4 + 8 + 4 + 8: refuse counts the file cannot possibly hold.
        r.check_count(n_kv, 13, "metadata entries")?;
        r.check_count(n_tensors, 32, "tensors")?;

        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(Error::invalid(path, format!("metadata key `{key}` appears twice")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a as usize,
                _ => {
                    return Err(Error::invalid(path, format!("general.alignment {v:?} is not a power of two")));
                }
            },
        };

        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::invalid(path, format!("tensor `{name}` has {n_dims} dimensions (1 to 4 allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64()?);
            }
            let ty_id = r.u32()?;
            let offset = r.u64()?;
            raw.push((name, dims, ty_id, offset));
        }
        let data_start = r.pos.div_ceil(alignment) * alignment;
        if data_start > data.len() {
            return Err(Error::invalid(path, "file ends before its tensor data (truncated?)"));
        }
        let data_len = data.len() - data_start;

        let mut tensors = Vec::with_capacity(raw.len());
        let mut index = HashMap::with_capacity(raw.len());
        for (name, dims, ty_id, offset) in raw {
            let ty = GgmlType::from_id(ty_id).map_err(|msg| Error::invalid(path, format!("tensor `{name}`: {msg}")))?;
            let n = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n > 0)
                .ok_or_else(|| Error::invalid(path, format!("tensor `{name}` has dimensions {dims:?}")))?;
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(Error::invalid(
                    path,
                    format!(
                        "tensor `{name}`: row length {} is not a multiple of the {ty:?} block ({})",
                        dims[0],
                        ty.block_len()
                    ),
                ));
            }
            let len = (n / ty.block_len() as u64)
                .checked_mul(ty.block_bytes() as u64)
                .filter(|&l| l <= data_len as u64)
                .ok_or_else(|| {
                    Error::invalid(path, format!("tensor `{name}` ({dims:?}, {ty:?}) is larger than the file"))
                })? as usize;
            if offset % alignment as u64 != 0 {
                return Err(Error::invalid(
                    path,
                    format!("tensor `{name}` offset {offset} is not {alignment}-byte aligned"),
                ));
            }
            if offset > (data_len - len) as u64 {
                return Err(Error::invalid(
                    path,
                    format!(
                        "tensor `{name}` (bytes {offset}..{}) runs past the end of the file (truncated?)",
                        offset as u128 + len as u128
                    ),
                ));
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::invalid(path, format!("tensor `{name}` appears twice")));
            }
            tensors.push(TensorInfo { name, dims, ty, start: data_start + offset as usize, len });
        }
        // Tensors may not share bytes: overlapping extents mean a corrupt or crafted table.
        let mut extents: Vec<(usize, usize, &str)> =
            tensors.iter().map(|t| (t.start, t.start + t.len, t.name.as_str())).collect();
        extents.sort_unstable();
        for w in extents.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(Error::invalid(path, format!("tensors `{}` and `{}` overlap in the file", w[0].2, w[1].2)));
            }
        }
        Ok(Gguf { path: path.to_path_buf(), version, metadata, tensors, index, data })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw (possibly quantised) bytes of a tensor.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.data[t.start..t.start + t.len]
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(&self.path, format!("metadata `{key}` is missing or not a string")))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key).and_then(Value::as_u64).ok_or_else(|| {
            Error::invalid(&self.path, format!("metadata `{key}` is missing or not a non-negative integer"))
        })
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get(key)
            .and_then(Value::as_f32)
            .ok_or_else(|| Error::invalid(&self.path, format!("metadata `{key}` is missing or not a float")))
    }
}

/// A cursor over the file's bytes that never reads past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, what: &str) -> Error {
        Error::invalid(self.path, format!("file ends inside {what} at byte {} (truncated?)", self.pos))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated("the header"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Refuses a declared count of items of at least `min_bytes` each that the rest of the file cannot hold.
    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Result<()> {
        if count.saturating_mul(min_bytes) > self.remaining() as u64 {
            return Err(Error::invalid(
                self.path,
                format!(
                    "header declares {count} {what}, more than the {} remaining bytes can hold (truncated or corrupt?)",
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        if len > self.remaining() as u64 {
            return Err(self.truncated("a string"));
        }
        let bytes = self.bytes(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::invalid(self.path, format!("string at byte {} is not valid UTF-8", self.pos - len as usize))
        })
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(Error::invalid(self.path, format!("bool value {b} at byte {}", self.pos - 1)));
                }
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(Error::invalid(self.path, "metadata arrays nested too deeply"));
                }
                let item_ty = self.u32()?;
                let count = self.u64()?;
                let min = match item_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    10..=12 => 8,
                    8 => 8,  // the string's length
                    9 => 12, // a nested array's type and count
                    t => {
                        return Err(Error::invalid(self.path, format!("unknown metadata value type {t}")));
                    }
                };
                self.check_count(count, min, "array items")?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            t => {
                return Err(Error::invalid(self.path, format!("unknown metadata value type {t}")));
            }
        })
    }
}
