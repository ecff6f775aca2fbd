//! The GGUF container: header, metadata key/values, tensor infos, alignment and the data section.
//!
//! Layout (facts from llama.cpp `docs/gguf.md` / `ggml/src/gguf.cpp` and gguf-py `gguf/constants.py`,
//! `gguf/gguf_reader.py`), all little-endian:
//!
//! ```text
//! u32 magic "GGUF" | u32 version (2 or 3) | u64 tensor_count | u64 kv_count
//! kv_count x  { string key | u32 value_type | value }
//! tensor_count x { string name | u32 n_dims | u64 dims[n_dims] (innermost first) | u32 ggml_type | u64 offset }
//! padding to `general.alignment` (default 32) | data section (tensor offsets are relative to its start)
//! string = u64 byte length | UTF-8 bytes;  array = u32 element type | u64 count | elements
//! ```
//!
//! Contract: [`GgufFile::open`] validates everything it hands out. Every count and length read from
//! the file is checked against the bytes that remain before anything is allocated for it, so a
//! hostile header can make the reader allocate at most a small multiple of the file size; every
//! tensor's data range is checked to lie inside the file and to share no byte with another's (so
//! dequantising them all costs a bounded multiple of the file size too). Any violation is an
//! [`Error::InvalidFile`] naming the file and the field; nothing here panics on bad input.

use super::ggml_type::GgmlType;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// `"GGUF"` read as a little-endian `u32`.
const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Nesting limit for arrays of arrays (the format allows them; no model uses more than one level).
const MAX_ARRAY_DEPTH: usize = 4;

/// The type tag of a metadata value (gguf-py `GGUFValueType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// 0
    U8,
    /// 1
    I8,
    /// 2
    U16,
    /// 3
    I16,
    /// 4
    U32,
    /// 5
    I32,
    /// 6
    F32,
    /// 7 (one byte, 0 or 1)
    Bool,
    /// 8
    String,
    /// 9
    Array,
    /// 10
    U64,
    /// 11
    I64,
    /// 12
    F64,
}

impl ValueType {
    /// The tag with this id.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The GGUF id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The fewest bytes one value of this type takes in the file (a string's length prefix, an
    /// array's type and count): what bounds a count before anything is allocated for it.
    fn min_encoded_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `f32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Homogeneous array.
    Array(Array),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

/// A homogeneous metadata array, stored by element type (so a large token list costs what it
/// costs in the file, not a tagged value per element).
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    /// `u8[]`
    U8(Vec<u8>),
    /// `i8[]`
    I8(Vec<i8>),
    /// `u16[]`
    U16(Vec<u16>),
    /// `i16[]`
    I16(Vec<i16>),
    /// `u32[]`
    U32(Vec<u32>),
    /// `i32[]`
    I32(Vec<i32>),
    /// `f32[]`
    F32(Vec<f32>),
    /// `bool[]`
    Bool(Vec<bool>),
    /// `string[]`
    String(Vec<String>),
    /// Array of arrays.
    Array(Vec<Array>),
    /// `u64[]`
    U64(Vec<u64>),
    /// `i64[]`
    I64(Vec<i64>),
    /// `f64[]`
    F64(Vec<f64>),
}

impl Array {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Integer elements widened to `i64` (for token types, which writers store as i32 or u32).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Array::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Array::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I64(v) => v.clone(),
            Array::U64(v) => v
                .iter()
                .map(|&x| i64::try_from(x).ok())
                .collect::<Option<_>>()?,
            _ => return None,
        })
    }
}

impl Value {
    /// The type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer that is non-negative, as `u64` (writers differ on u32 vs i32 vs u64).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any float or integer, as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's entry in the tensor-info table, validated against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The llama.cpp tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions as stored: innermost (contiguous) first, the reverse of row-major shape order.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Number of values (product of `dims`).
    pub n_elements: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in row-major order, outermost first (Hugging Face / numpy order).
    pub fn shape(&self) -> Vec<usize> {
        // dims were checked to multiply to n_elements without overflow and to fit the file,
        // so every dim fits usize.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

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

/// A parsed, validated GGUF file whose tensor data stays in the file (memory-mapped).
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    version: u32,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

pub(crate) fn invalid(path: &Path, field: impl fmt::Display, detail: impl Into<String>) -> Error {
    Error::InvalidFile {
        path: path.to_path_buf(),
        field: field.to_string(),
        detail: detail.into(),
    }
}

impl GgufFile {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let bytes = if len == 0 {
            // Mapping an empty file fails on some platforms; the parser reports the truncation.
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and private to this value. Another process truncating
            // or rewriting the file while it is mapped would change what we read (or raise SIGBUS),
            // as with every memory-mapped model loader; model files are not modified in place.
            Bytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::parse(path.to_path_buf(), bytes)
    }

    /// Parses a GGUF image held in memory; `path` is only used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(path.into(), Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let mut cur = Cursor {
            bytes: &bytes,
            pos: 0,
            path: &path,
        };
        let magic = cur.take(4, "header.magic")?;
        if magic != MAGIC {
            return Err(invalid(
                &path,
                "header.magic",
                format!("expected \"GGUF\" (47 47 55 46), found {magic:02x?}"),
            ));
        }
        let version = cur.u32("header.version")?;
        if version != 2 && version != 3 {
            let detail = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                format!(
                    "version {} read big-endian: only little-endian files are supported",
                    version.swap_bytes()
                )
            } else if version == 1 {
                "version 1 (32-bit counts) is not supported: expected 2 or 3".to_string()
            } else {
                format!("expected 2 or 3, found {version}")
            };
            return Err(invalid(&path, "header.version", detail));
        }
        let tensor_count = cur.u64("header.tensor_count")?;
        let kv_count = cur.u64("header.kv_count")?;
        // Each key/value takes at least a key length (8) and a type (4) plus one byte; each tensor
        // info at least a name length (8), n_dims (4), type (4) and offset (8).
        cur.check_count(kv_count, 13, "header.kv_count", "key/value pairs")?;
        cur.check_count(tensor_count, 24, "header.tensor_count", "tensor infos")?;

        let mut metadata =
            Vec::with_capacity(capacity::<(String, Value)>(kv_count, cur.remaining()));
        let mut index = HashMap::new();
        for i in 0..kv_count {
            let key = cur.string(format_args!("metadata[{i}].key"))?;
            let field = format!("metadata '{key}'");
            let type_id = cur.u32(format_args!("{field}.type"))?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| {
                invalid(
                    &path,
                    format!("{field}.type"),
                    format!("unknown value type {type_id} (expected 0..=12)"),
                )
            })?;
            let value = cur.value(ty, &field, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(invalid(&path, field, "key appears twice"));
            }
            metadata.push((key, value));
        }

        let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(invalid(
                    &path,
                    "metadata 'general.alignment'",
                    format!("expected a u32 power of two, found {v:?}"),
                ))
            }
        };

        let mut tensors = Vec::with_capacity(capacity::<TensorInfo>(tensor_count, cur.remaining()));
        let mut names = HashMap::new();
        for i in 0..tensor_count {
            let name = cur.string(format_args!("tensor[{i}].name"))?;
            let field = format!("tensor '{name}'");
            let n_dims = cur.u32(format_args!("{field}.n_dims"))?;
            if n_dims as usize > MAX_DIMS {
                return Err(invalid(
                    &path,
                    format!("{field}.n_dims"),
                    format!("{n_dims} dimensions, at most {MAX_DIMS} supported"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut n_elements: u64 = 1;
            for d in 0..n_dims {
                let dim = cur.u64(format_args!("{field}.dims[{d}]"))?;
                if dim > i64::MAX as u64 {
                    return Err(invalid(
                        &path,
                        format!("{field}.dims[{d}]"),
                        format!("{dim} is negative as ggml's int64"),
                    ));
                }
                n_elements = n_elements.checked_mul(dim).ok_or_else(|| {
                    invalid(
                        &path,
                        format!("{field}.dims"),
                        format!("the element count overflows 64 bits at dims[{d}] = {dim}"),
                    )
                })?;
                dims.push(dim);
            }
            let type_id = cur.u32(format_args!("{field}.type"))?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                invalid(
                    &path,
                    format!("{field}.type"),
                    format!("unknown ggml type {type_id}"),
                )
            })?;
            let block = ggml_type.block_size();
            let ne0 = dims.first().copied().unwrap_or(1);
            if ne0 % block != 0 {
                return Err(invalid(
                    &path,
                    format!("{field}.dims[0]"),
                    format!("{ne0} is not a multiple of the {ggml_type} block size {block}"),
                ));
            }
            let n_bytes = (n_elements / block)
                .checked_mul(ggml_type.type_size())
                .ok_or_else(|| {
                    invalid(
                        &path,
                        format!("{field}.dims"),
                        format!("{n_elements} {ggml_type} values overflow a 64-bit byte size"),
                    )
                })?;
            let offset = cur.u64(format_args!("{field}.offset"))?;
            if offset % alignment != 0 {
                return Err(invalid(
                    &path,
                    format!("{field}.offset"),
                    format!("{offset} is not a multiple of the alignment {alignment}"),
                ));
            }
            if names.insert(name.clone(), i).is_some() {
                return Err(invalid(&path, field, "tensor name appears twice"));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                n_elements,
                n_bytes,
            });
        }

        let file_len = bytes.len() as u64;
        let end_of_infos = cur.pos as u64;
        let data_offset = end_of_infos.div_ceil(alignment) * alignment;
        for t in &tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= file_len => {}
                (Some(start), Some(end)) => {
                    return Err(invalid(
                        &path,
                        format!("tensor '{}'", t.name),
                        format!("data [{start}, {end}) ends past the file end ({file_len} bytes)"),
                    ))
                }
                _ => {
                    return Err(invalid(
                        &path,
                        format!("tensor '{}'", t.name),
                        format!(
                            "data offset {} + size {} overflows 64 bits (file is {file_len} bytes)",
                            t.offset, t.n_bytes
                        ),
                    ))
                }
            }
        }
        // Tensors sharing bytes would let a small file dequantise to any number of copies of the
        // same data; llama.cpp requires each tensor to start where the previous one ends.
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
        by_offset.sort_unstable_by_key(|t| t.offset);
        for pair in by_offset.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            // No overflow: offset + n_bytes fits once data_offset is added (checked above).
            if b.offset < a.offset + a.n_bytes {
                return Err(invalid(
                    &path,
                    format!("tensor '{}'", b.name),
                    format!(
                        "data at offset {} overlaps tensor '{}' (offsets {}..{})",
                        b.offset,
                        a.name,
                        a.offset,
                        a.offset + a.n_bytes
                    ),
                ));
            }
        }

        Ok(GgufFile {
            path,
            bytes,
            version,
            metadata,
            index,
            tensors,
            alignment,
            data_offset,
        })
    }

    /// The file this was read from (as given).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the file is empty (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name` (llama.cpp naming).
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor of this file.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        // Offsets and sizes were checked against the file length in `parse`; a TensorInfo from
        // another file (its fields are public) could still be out of range: checked, never indexed.
        let range = self
            .data_offset
            .checked_add(info.offset)
            .and_then(|start| Some((start, start.checked_add(info.n_bytes)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range.and_then(|r| self.bytes.get(r)).unwrap_or(&[])
    }

    /// A tensor's values as f32 (see [`super::dequant`] for the supported types).
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let src = self.tensor_bytes(info);
        if src.len() as u64 != info.n_bytes {
            return Err(invalid(
                &self.path,
                format!("tensor '{}'", info.name),
                "tensor info does not belong to this file",
            ));
        }
        let mut out = vec![0f32; info.n_elements as usize];
        super::dequant::dequantize_into(info.ggml_type, src, &mut out)
            .map_err(|detail| invalid(&self.path, format!("tensor '{}'", info.name), detail))?;
        Ok(out)
    }
}

/// Initial capacity for `count` items of `T` announced by the file: never more memory than the
/// bytes that remain, whatever the count says (the vector still grows if the items are really there).
fn capacity<T>(count: u64, remaining: u64) -> usize {
    count.min(remaining / std::mem::size_of::<T>().max(1) as u64) as usize
}

/// `field[i]`, formatted only when an error needs it.
#[derive(Clone, Copy)]
struct Indexed<'f>(&'f str, usize);

impl fmt::Display for Indexed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// A bounds-checked little-endian reader over the file image.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, field: impl fmt::Display) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(invalid(
                self.path,
                field,
                format!(
                    "needs {n} bytes at offset {}, but the file ends at {} (truncated?)",
                    self.pos,
                    self.bytes.len()
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: impl fmt::Display) -> Result<[u8; N]> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, field: impl fmt::Display) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: impl fmt::Display) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Fails unless `count` items of at least `min_size` bytes each fit in what remains.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        field: impl fmt::Display,
        what: impl fmt::Display,
    ) -> Result<()> {
        let remaining = self.remaining();
        if count > remaining / min_size {
            return Err(invalid(
                self.path,
                field,
                format!(
                    "{count} {what} need at least {} bytes, but only {remaining} remain after offset {}",
                    count.saturating_mul(min_size),
                    self.pos
                ),
            ));
        }
        Ok(())
    }

    fn string(&mut self, field: impl fmt::Display + Copy) -> Result<String> {
        let at = self.pos;
        let len = self.u64(field)?;
        if len > self.remaining() {
            return Err(invalid(
                self.path,
                field,
                format!(
                    "string of {len} bytes at offset {at} runs past the file end ({} bytes)",
                    self.bytes.len()
                ),
            ));
        }
        let raw = self.take(len, field)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(invalid(
                self.path,
                field,
                format!(
                    "string at offset {at} is not valid UTF-8 (invalid byte at index {})",
                    e.valid_up_to()
                ),
            )),
        }
    }

    fn value(&mut self, ty: ValueType, field: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(field)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(field)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(field)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(field)?)),
            ValueType::U32 => Value::U32(self.u32(field)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(field)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(field)?)),
            ValueType::U64 => Value::U64(self.u64(field)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(field)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(field)?)),
            ValueType::Bool => Value::Bool(self.bool(field)?),
            ValueType::String => Value::String(self.string(field)?),
            ValueType::Array => Value::Array(self.array_value(field, depth)?),
        })
    }

    fn bool(&mut self, field: impl fmt::Display + Copy) -> Result<bool> {
        match self.array::<1>(field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(invalid(
                self.path,
                field,
                format!("bool byte {b} at offset {} (expected 0 or 1)", self.pos - 1),
            )),
        }
    }

    fn array_value(&mut self, field: &str, depth: usize) -> Result<Array> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(invalid(
                self.path,
                field,
                format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
            ));
        }
        let type_id = self.u32(format_args!("{field} (array element type)"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| {
            invalid(
                self.path,
                field,
                format!("unknown array element type {type_id} (expected 0..=12)"),
            )
        })?;
        let count = self.u64(format_args!("{field} (array length)"))?;
        self.check_count(
            count,
            ty.min_encoded_size(),
            format_args!("{field} (array length)"),
            format_args!("{ty:?} elements"),
        )?;
        let n = count as usize;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                const W: usize = std::mem::size_of::<$t>();
                let raw = self.take(count * W as u64, field)?;
                Array::$variant(
                    raw.chunks_exact(W)
                        .map(|c| {
                            let mut a = [0u8; W];
                            a.copy_from_slice(c);
                            <$t>::from_le_bytes(a)
                        })
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            ValueType::U8 => Array::U8(self.take(count, field)?.to_vec()),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.bool(Indexed(field, i))?);
                }
                Array::Bool(v)
            }
            ValueType::String => {
                let mut v = Vec::with_capacity(capacity::<String>(count, self.remaining()));
                for i in 0..n {
                    v.push(self.string(Indexed(field, i))?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(capacity::<Array>(count, self.remaining()));
                for i in 0..n {
                    v.push(self.array_value(&format!("{field}[{i}]"), depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}
