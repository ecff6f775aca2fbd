//! Hugging Face model folders: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json` / `chat_template.jinja`
//! and `generation_config.json`.
//!
//! Everything read from a file is checked before it is used: sizes and offsets by `read_header`
//! and the `safetensors` crate (headers over 100 MB, offsets past the end, and byte lengths that
//! disagree with shape and dtype are rejected), shapes against `config.json`, and `config.json`
//! values against sane bounds, so a hostile folder yields [`Error::InvalidFile`] naming the file and
//! field, never a panic. The only allocations are the tensors the model needs, sized from shapes
//! already checked against the file (f16/bf16 tensors take twice their stored bytes once widened to
//! f32).

use super::config::{LlamaConfig, RopeScaling};
use super::weights::{HostTensor, ModelFiles, TokenizerFiles};
use crate::{Error, Result};
use safetensors::Dtype;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Largest value accepted for any single model dimension from `config.json` (vocabulary, widths,
/// layers, heads, positions). Far above any real Llama (vocab 256k, hidden 16k, 128k positions), low
/// enough that products of two dimensions cannot overflow `usize` on 64-bit targets.
pub const MAX_DIM: usize = 1 << 24;

/// Largest `num_hidden_layers` accepted (real Llamas have at most ~130): bounds the list of expected
/// tensor names built before any tensor is matched against the file.
pub const MAX_LAYERS: usize = 4096;

pub(crate) fn invalid(path: &Path, field: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::InvalidFile {
        path: path.to_path_buf(),
        field: field.into(),
        detail: detail.into(),
    }
}

/// Read and parse a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| invalid(path, "json", e.to_string()))
}

/// A memory-mapped safetensors file whose header has been validated.
pub(crate) struct SafetensorsFile {
    path: PathBuf,
    mmap: memmap2::Mmap,
    /// Start of the data section (8-byte length + JSON header).
    data_start: usize,
    meta: safetensors::tensor::Metadata,
}

impl SafetensorsFile {
    /// Map `path` and validate its header (offsets, sizes, dtypes).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process. Another process truncating or
        // rewriting the file while it is mapped could change (or fault on) the bytes we read; that
        // is the standard caveat of mapping model files, and the reason tensors are copied out right
        // after the header is validated rather than kept borrowed.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let (header_len, meta) = read_header(path, &mmap)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            meta,
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Names of every tensor in the file, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.meta.tensors().into_keys().collect();
        names.sort();
        names
    }

    /// `(dtype, shape)` of a tensor, when present.
    pub(crate) fn info(&self, name: &str) -> Option<(Dtype, Vec<usize>)> {
        self.meta.info(name).map(|t| (t.dtype, t.shape.clone()))
    }

    /// The tensor `name` widened to f32, checked to have `expected` shape.
    pub(crate) fn tensor_f32(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let t = self
            .meta
            .info(name)
            .ok_or_else(|| invalid(&self.path, name, "tensor missing"))?;
        if t.shape != expected {
            return Err(invalid(
                &self.path,
                name,
                format!("shape {:?}, expected {:?}", t.shape, expected),
            ));
        }
        let (s, e) = t.data_offsets;
        // In bounds: read_header checked that the offsets are contiguous and end at the file's end.
        let bytes = &self.mmap[self.data_start + s..self.data_start + e];
        let data = bytes_to_f32(t.dtype, bytes).ok_or_else(|| {
            invalid(
                &self.path,
                format!("{name}.dtype"),
                format!("{:?} not supported (F32, F16, BF16)", t.dtype),
            )
        })?;
        Ok(HostTensor {
            shape: expected.to_vec(),
            data,
        })
    }
}

/// Largest JSON header accepted, as the `safetensors` crate's own reader.
const MAX_HEADER_LEN: u64 = 100_000_000;

/// The header length and the parsed header of a safetensors image: the header length is at most
/// 100 MB and inside the file, the JSON is valid, offsets are contiguous from 0 with byte lengths
/// matching shape x dtype (checked by `Metadata`'s deserializer, overflow included), and the data
/// fills the rest of the file exactly.
///
/// `SafeTensors::read_metadata` does the same, except that it adds the header length to a data end
/// taken from the header unchecked, which panics in debug builds for ends near `u64::MAX`.
fn read_header(path: &Path, bytes: &[u8]) -> Result<(usize, safetensors::tensor::Metadata)> {
    let bad = |detail: String| invalid(path, "header", detail);
    let prefix = bytes.first_chunk::<8>().ok_or_else(|| {
        bad(format!(
            "file of {} bytes is shorter than the 8-byte header length",
            bytes.len()
        ))
    })?;
    let n = u64::from_le_bytes(*prefix);
    if n > MAX_HEADER_LEN {
        return Err(bad(format!(
            "header length {n} is over the {MAX_HEADER_LEN} bytes safetensors allows"
        )));
    }
    let data = &bytes[8..];
    // No truncation: n <= 100 MB.
    let n = n as usize;
    if n > data.len() {
        return Err(bad(format!(
            "header of {n} bytes runs past the end of the {}-byte file",
            bytes.len()
        )));
    }
    let meta: safetensors::tensor::Metadata =
        serde_json::from_slice(&data[..n]).map_err(|e| bad(format!("invalid header: {e}")))?;
    let data_len = data.len() - n;
    let end = meta
        .tensors()
        .values()
        .map(|t| t.data_offsets.1)
        .max()
        .unwrap_or(0);
    if end != data_len {
        return Err(bad(format!(
            "tensor data ends at byte {end} of a {data_len}-byte data section"
        )));
    }
    Ok((n, meta))
}

/// Little-endian F32/F16/BF16 bytes to f32; `None` for any other dtype.
fn bytes_to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        _ => return None,
    })
}

/// Load a Hugging Face Llama folder.
pub fn load_hf(dir: &Path) -> Result<ModelFiles> {
    if !dir.is_dir() {
        return Err(invalid(
            dir,
            "path",
            "not a directory (expected a Hugging Face model folder)",
        ));
    }
    let config = parse_config(
        &dir.join("config.json"),
        &dir.join("generation_config.json"),
    )?;

    // Which file holds each tensor.
    let index_path = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    let (shard_of, shard_names): (HashMap<String, usize>, Vec<String>) = if single.is_file() {
        (HashMap::new(), vec!["model.safetensors".to_string()])
    } else if index_path.is_file() {
        parse_index(&index_path)?
    } else {
        return Err(invalid(
            dir,
            "model.safetensors",
            "neither model.safetensors nor model.safetensors.index.json found",
        ));
    };
    let shards = shard_names
        .iter()
        .map(|n| SafetensorsFile::open(&dir.join(n)))
        .collect::<Result<Vec<_>>>()?;

    let mut tensors = HashMap::new();
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    for (name, shape) in expected_tensors(&config) {
        let shard = match shard_of.get(&name) {
            Some(&i) => &shards[i],
            None if shard_of.is_empty() => &shards[0],
            None => {
                if name == "lm_head.weight" && config.tie_word_embeddings {
                    continue;
                }
                return Err(invalid(
                    &index_path,
                    format!("weight_map.{name}"),
                    "tensor missing",
                ));
            }
        };
        if shard.info(&name).is_none() {
            if name == "lm_head.weight" && config.tie_word_embeddings {
                continue;
            }
            return Err(invalid(shard.path(), &name, "tensor missing"));
        }
        let (dtype, _) = shard.info(&name).expect("checked above");
        let t = shard.tensor_f32(&name, &shape)?;
        *dtypes.entry(format!("{dtype:?}")).or_default() += 1;
        tensors.insert(name, t);
    }

    let tokenizer = load_tokenizer(dir)?;
    let dtype_list: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    Ok(ModelFiles {
        config,
        tensors,
        tokenizer,
        source: format!(
            "Hugging Face safetensors ({} file{}; stored {})",
            shards.len(),
            if shards.len() == 1 { "" } else { "s" },
            dtype_list.join(", ")
        ),
    })
}

/// The tensors a Llama of `config` needs, with their Hugging Face names and shapes
/// (`lm_head.weight` included even when tied; the loader skips it when absent and tied).
pub fn expected_tensors(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let i = config.intermediate_size;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![config.vocab_size, h],
    )];
    for l in 0..config.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    out
}

/// `model.safetensors.index.json` -> (tensor -> shard number, shard file names).
fn parse_index(path: &Path) -> Result<(HashMap<String, usize>, Vec<String>)> {
    let json = read_json(path)?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(path, "weight_map", "missing or not an object"))?;
    let mut files: Vec<String> = Vec::new();
    let mut shard_of = HashMap::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| invalid(path, format!("weight_map.{tensor}"), "not a string"))?;
        // Shards live next to the index: a path component would let a hostile index read any file.
        if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
            return Err(invalid(
                path,
                format!("weight_map.{tensor}"),
                format!("{file:?} is not a plain file name in the model folder"),
            ));
        }
        let n = match files.iter().position(|f| f == file) {
            Some(n) => n,
            None => {
                files.push(file.to_string());
                files.len() - 1
            }
        };
        shard_of.insert(tensor.clone(), n);
    }
    if files.is_empty() {
        return Err(invalid(path, "weight_map", "empty"));
    }
    Ok((shard_of, files))
}

fn get_usize(path: &Path, json: &Value, field: &str, default: Option<usize>) -> Result<usize> {
    match json.get(field) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| invalid(path, field, "missing (required)"))
        }
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| {
                invalid(
                    path,
                    field,
                    format!("expected a non-negative integer, got {v}"),
                )
            })?;
            if n == 0 || n > MAX_DIM as u64 {
                return Err(invalid(
                    path,
                    field,
                    format!("expected 1..={MAX_DIM}, got {n}"),
                ));
            }
            Ok(n as usize)
        }
    }
}

fn get_f32(path: &Path, json: &Value, field: &str, default: f32) -> Result<f32> {
    match json.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            let x = v
                .as_f64()
                .ok_or_else(|| invalid(path, field, format!("expected a number, got {v}")))?;
            // Checked after narrowing: 1e39 or 1e-46 become inf or 0 as f32.
            let narrow = x as f32;
            if !narrow.is_finite() || narrow <= 0.0 {
                return Err(invalid(
                    path,
                    field,
                    format!("expected a finite positive number within f32 range, got {x}"),
                ));
            }
            Ok(narrow)
        }
    }
}

/// Token ids from an integer, a list of integers, or null.
fn token_ids(path: &Path, json: &Value, field: &str) -> Result<Vec<u32>> {
    let one = |v: &Value| -> Result<u32> {
        v.as_u64()
            .filter(|&n| n <= u32::MAX as u64)
            .map(|n| n as u32)
            .ok_or_else(|| invalid(path, field, format!("expected a token id, got {v}")))
    };
    match json.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// Parse `config.json` (and the eos ids of `generation_config.json`, when that file exists).
pub fn parse_config(path: &Path, generation_config: &Path) -> Result<LlamaConfig> {
    let json = read_json(path)?;
    if !json.is_object() {
        return Err(invalid(path, "json", "expected an object"));
    }
    if let Some(mt) = json.get("model_type") {
        if mt.as_str() != Some("llama") {
            return Err(invalid(
                path,
                "model_type",
                format!("expected \"llama\", got {mt}"),
            ));
        }
    }
    if let Some(act) = json.get("hidden_act") {
        if act.as_str() != Some("silu") {
            return Err(invalid(
                path,
                "hidden_act",
                format!("expected \"silu\", got {act}"),
            ));
        }
    }
    for field in ["attention_bias", "mlp_bias"] {
        if json.get(field).and_then(Value::as_bool) == Some(true) {
            return Err(invalid(
                path,
                field,
                "biases are not supported (expected false)",
            ));
        }
    }
    let vocab_size = get_usize(path, &json, "vocab_size", None)?;
    let hidden_size = get_usize(path, &json, "hidden_size", None)?;
    let intermediate_size = get_usize(path, &json, "intermediate_size", None)?;
    let num_hidden_layers = get_usize(path, &json, "num_hidden_layers", None)?;
    if num_hidden_layers > MAX_LAYERS {
        return Err(invalid(
            path,
            "num_hidden_layers",
            format!("expected 1..={MAX_LAYERS}, got {num_hidden_layers}"),
        ));
    }
    let num_attention_heads = get_usize(path, &json, "num_attention_heads", None)?;
    let num_key_value_heads = get_usize(
        path,
        &json,
        "num_key_value_heads",
        Some(num_attention_heads),
    )?;
    if num_attention_heads % num_key_value_heads != 0 {
        return Err(invalid(
            path,
            "num_key_value_heads",
            format!(
                "{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"
            ),
        ));
    }
    let default_head_dim =
        (hidden_size % num_attention_heads == 0).then_some(hidden_size / num_attention_heads);
    let head_dim = get_usize(path, &json, "head_dim", default_head_dim)?;
    if head_dim % 2 != 0 {
        return Err(invalid(
            path,
            "head_dim",
            format!("RoPE needs an even head_dim, got {head_dim}"),
        ));
    }
    if num_attention_heads * head_dim > MAX_DIM {
        return Err(invalid(
            path,
            "head_dim",
            format!("num_attention_heads * head_dim over {MAX_DIM}"),
        ));
    }
    let rms_norm_eps = get_f32(path, &json, "rms_norm_eps", 1e-6)?;
    let max_position_embeddings = get_usize(path, &json, "max_position_embeddings", Some(2048))?;
    let tie_word_embeddings = match json.get("tie_word_embeddings") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(invalid(
                path,
                "tie_word_embeddings",
                format!("expected a boolean, got {v}"),
            ))
        }
    };

    // RoPE: transformers < 5 writes `rope_theta` and `rope_scaling`; transformers 5 writes both into
    // `rope_parameters`.
    let params = json.get("rope_parameters").filter(|v| v.is_object());
    let theta_field = if params.and_then(|p| p.get("rope_theta")).is_some() {
        "rope_parameters.rope_theta"
    } else {
        "rope_theta"
    };
    let rope_theta = match params.and_then(|p| p.get("rope_theta")) {
        Some(_) => get_f32(path, params.expect("checked"), "rope_theta", 10000.0),
        None => get_f32(path, &json, "rope_theta", 10000.0),
    }
    .map_err(|e| match e {
        Error::InvalidFile { path, detail, .. } => Error::InvalidFile {
            path,
            field: theta_field.into(),
            detail,
        },
        e => e,
    })?;
    let (scaling, scaling_field) = match json.get("rope_scaling").filter(|v| !v.is_null()) {
        Some(s) => (Some(s), "rope_scaling"),
        None => (params, "rope_parameters"),
    };
    let rope_scaling = match scaling {
        None => RopeScaling::None,
        Some(s) => parse_rope_scaling(path, scaling_field, s, max_position_embeddings)?,
    };

    let bos = token_ids(path, &json, "bos_token_id")?;
    let mut eos_token_ids = token_ids(path, &json, "eos_token_id")?;
    if generation_config.is_file() {
        let gen = read_json(generation_config)?;
        for id in token_ids(generation_config, &gen, "eos_token_id")? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    for (field, ids) in [("bos_token_id", &bos), ("eos_token_id", &eos_token_ids)] {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(invalid(
                path,
                field,
                format!("token {bad} is not below vocab_size {vocab_size}"),
            ));
        }
    }
    Ok(LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        rope_scaling,
        max_position_embeddings,
        tie_word_embeddings,
        bos_token_id: bos.first().copied(),
        eos_token_ids,
    })
}

fn parse_rope_scaling(path: &Path, field: &str, s: &Value, max_pos: usize) -> Result<RopeScaling> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |name: &str| -> Result<f32> {
        let v = s
            .get(name)
            .and_then(Value::as_f64)
            .map(|x| x as f32)
            .filter(|x| x.is_finite() && *x > 0.0);
        v.ok_or_else(|| {
            invalid(
                path,
                format!("{field}.{name}"),
                format!(
                    "expected a finite positive number within f32 range, got {:?}",
                    s.get(name)
                ),
            )
        })
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => {
            let low_freq_factor = num("low_freq_factor")?;
            let high_freq_factor = num("high_freq_factor")?;
            if high_freq_factor <= low_freq_factor {
                return Err(invalid(
                    path,
                    format!("{field}.high_freq_factor"),
                    format!(
                        "must exceed low_freq_factor {low_freq_factor}, got {high_freq_factor}"
                    ),
                ));
            }
            RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: get_usize(
                    path,
                    s,
                    "original_max_position_embeddings",
                    Some(max_pos),
                )?,
            }
        }
        other => {
            return Err(invalid(
                path,
                format!("{field}.rope_type"),
                format!("{other:?} not supported (default, linear, llama3)"),
            ))
        }
    })
}

/// `tokenizer.json` plus the chat template (`chat_template.jinja`, or `chat_template` in
/// `tokenizer_config.json`, a string or a list of `{name, template}` where `default` wins).
fn load_tokenizer(dir: &Path) -> Result<Option<TokenizerFiles>> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Ok(None);
    }
    let tokenizer = tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| invalid(&path, "tokenizer", e.to_string()))?;
    let mut chat_template = None;
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read(&jinja).map_err(|source| Error::Io {
            path: jinja.clone(),
            source,
        })?;
        chat_template =
            Some(String::from_utf8(text).map_err(|e| invalid(&jinja, "template", e.to_string()))?);
    }
    let tc = dir.join("tokenizer_config.json");
    if chat_template.is_none() && tc.is_file() {
        let json = read_json(&tc)?;
        chat_template = match json.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => {
                let pick = list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .or_else(|| list.first());
                pick.and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                    .map(String::from)
            }
            Some(v) => {
                return Err(invalid(
                    &tc,
                    "chat_template",
                    format!("expected a string or list, got {v}"),
                ))
            }
        };
    }
    Ok(Some(TokenizerFiles {
        tokenizer,
        chat_template,
    }))
}
