//! [`LlamaConfig`] from GGUF metadata.
//!
//! Keys (gguf-py `gguf/constants.py`, `Keys.LLM` / `Keys.Attention` / `Keys.Rope` / `Keys.Tokenizer`,
//! with `{arch}` = `general.architecture`): `{arch}.context_length`, `.embedding_length`,
//! `.block_count`, `.feed_forward_length`, `.attention.head_count`, `.attention.head_count_kv`,
//! `.attention.layer_norm_rms_epsilon`, `.attention.key_length`, `.rope.freq_base`,
//! `.rope.dimension_count`, `.rope.scaling.type` / `.factor`, `tokenizer.ggml.*_token_id`.

use super::reader::{invalid, GgufFile, Value};
use crate::error::Result;
use crate::model::config::{LlamaConfig, RopeScaling};

/// Upper bounds that keep an absurd header from sizing a huge KV cache or activation buffer later.
const MAX_WIDTH: u64 = 1 << 20;
const MAX_LAYERS: u64 = 1 << 12;
const MAX_HEADS: u64 = 1 << 12;
const MAX_CONTEXT: u64 = 1 << 24;
const MAX_VOCAB: u64 = 1 << 24;

/// The architectures whose tensors follow the Llama layout this loader maps.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// Builds the configuration. `vocab_size` is the tokenizer's token count when the file has one;
/// `embedding_rows` the embedding's row count (used when there is no token list); `tied` whether
/// the file lacks `output.weight`.
pub fn llama_config(
    file: &GgufFile,
    embedding_rows: Option<usize>,
    tied: bool,
) -> Result<LlamaConfig> {
    let arch = architecture(file)?;
    let key = |k: &str| format!("{arch}.{k}");
    let uint = |k: &str, max: u64| -> Result<Option<usize>> {
        let k = key(k);
        match file.get(&k) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=max).contains(&n) => Ok(Some(n as usize)),
                _ => Err(invalid(
                    file.path(),
                    format!("metadata '{k}'"),
                    format!("expected an integer in 1..={max}, found {}", show(v)),
                )),
            },
        }
    };
    let required = |k: &str, max: u64| -> Result<usize> {
        uint(k, max)?.ok_or_else(|| {
            invalid(
                file.path(),
                format!("metadata '{}'", key(k)),
                "required key is missing",
            )
        })
    };
    let float = |k: &str| -> Result<Option<f32>> {
        let k = key(k);
        match file.get(&k) {
            None => Ok(None),
            // Checked after narrowing: an f64 such as 1e300 or 1e-300 becomes inf or 0 as f32.
            Some(v) => match v.as_f64().map(|x| x as f32) {
                Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                _ => Err(invalid(
                    file.path(),
                    format!("metadata '{k}'"),
                    format!("expected a positive finite number, found {}", show(v)),
                )),
            },
        }
    };

    let hidden_size = required("embedding_length", MAX_WIDTH)?;
    let intermediate_size = required("feed_forward_length", MAX_WIDTH)?;
    let num_hidden_layers = required("block_count", MAX_LAYERS)?;
    let num_attention_heads = required("attention.head_count", MAX_HEADS)?;
    let num_key_value_heads =
        uint("attention.head_count_kv", MAX_HEADS)?.unwrap_or(num_attention_heads);
    let max_position_embeddings = required("context_length", MAX_CONTEXT)?;
    let rms_norm_eps = float("attention.layer_norm_rms_epsilon")?.ok_or_else(|| {
        invalid(
            file.path(),
            format!("metadata '{}'", key("attention.layer_norm_rms_epsilon")),
            "required key is missing",
        )
    })?;
    // llama.cpp's default base when the key is absent (llama-model.cpp: 10000).
    let rope_theta = float("rope.freq_base")?.unwrap_or(10_000.0);

    let bad = |field: String, detail: String| invalid(file.path(), field, detail);
    if num_attention_heads % num_key_value_heads != 0 {
        return Err(bad(
            format!("metadata '{}'", key("attention.head_count_kv")),
            format!("{num_key_value_heads} does not divide the {num_attention_heads} query heads"),
        ));
    }
    let head_dim = match uint("attention.key_length", MAX_WIDTH)? {
        Some(d) => d,
        None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
        None => {
            return Err(bad(
                format!("metadata '{}'", key("attention.head_count")),
                format!("{num_attention_heads} heads do not divide the width {hidden_size}"),
            ))
        }
    };
    if head_dim % 2 != 0 {
        return Err(bad(
            format!("metadata '{}'", key("attention.head_count")),
            format!("head width {head_dim} is odd, RoPE needs pairs"),
        ));
    }
    if let Some(v) = uint("attention.value_length", MAX_WIDTH)? {
        if v != head_dim {
            return Err(bad(
                format!("metadata '{}'", key("attention.value_length")),
                format!("{v} differs from the key width {head_dim}: not a Llama layout"),
            ));
        }
    }
    if let Some(r) = uint("rope.dimension_count", MAX_WIDTH)? {
        if r != head_dim {
            return Err(bad(
                format!("metadata '{}'", key("rope.dimension_count")),
                format!("partial rotary ({r} of {head_dim} dims) is not supported"),
            ));
        }
    }

    let rope_scaling = rope_scaling(file, &arch)?;

    let tokens = file
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(|a| a.len());
    let vocab_size = match (tokens, uint("vocab_size", MAX_VOCAB)?, embedding_rows) {
        (Some(n), _, _) | (None, Some(n), _) | (None, None, Some(n)) => n,
        (None, None, None) => {
            return Err(bad(
                "metadata 'tokenizer.ggml.tokens'".into(),
                "no token list, vocab size or embedding to size the vocabulary".into(),
            ))
        }
    };
    if vocab_size == 0 || vocab_size as u64 > MAX_VOCAB {
        return Err(bad(
            "metadata 'tokenizer.ggml.tokens'".into(),
            format!("vocabulary of {vocab_size} tokens (expected 1..={MAX_VOCAB})"),
        ));
    }

    let token_id = |k: &str| -> Result<Option<u32>> {
        match file.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(id) if id < vocab_size as u64 => Ok(Some(id as u32)),
                _ => Err(invalid(
                    file.path(),
                    format!("metadata '{k}'"),
                    format!("expected a token id below {vocab_size}, found {}", show(v)),
                )),
            },
        }
    };
    let bos_token_id = token_id("tokenizer.ggml.bos_token_id")?;
    let mut eos_token_ids = Vec::new();
    for k in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = token_id(k)? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
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
        tie_word_embeddings: tied,
        bos_token_id,
        eos_token_ids,
    })
}

/// `general.architecture`, which must be one of [`SUPPORTED_ARCHITECTURES`].
pub fn architecture(file: &GgufFile) -> Result<String> {
    let field = "metadata 'general.architecture'";
    let arch = match file.get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(invalid(
                file.path(),
                field,
                format!("expected a string, found {}", show(v)),
            ))
        }
        None => return Err(invalid(file.path(), field, "required key is missing")),
    };
    if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(invalid(
            file.path(),
            field,
            format!(
                "architecture '{arch}' is not supported (supported: {SUPPORTED_ARCHITECTURES:?})"
            ),
        ));
    }
    Ok(arch)
}

fn rope_scaling(file: &GgufFile, arch: &str) -> Result<RopeScaling> {
    let type_key = format!("{arch}.rope.scaling.type");
    let factor_key = format!("{arch}.rope.scaling.factor");
    let kind = match file.get(&type_key) {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(v) => {
            return Err(invalid(
                file.path(),
                format!("metadata '{type_key}'"),
                format!("expected a string, found {}", show(v)),
            ))
        }
    };
    let factor = file
        .get(&factor_key)
        .and_then(Value::as_f64)
        .map(|f| f as f32);
    match (kind, factor) {
        (None | Some("none"), _) => Ok(RopeScaling::None),
        (Some("linear"), Some(f)) if f.is_finite() && f > 0.0 => {
            if f == 1.0 {
                Ok(RopeScaling::None)
            } else {
                Ok(RopeScaling::Linear { factor: f })
            }
        }
        (Some("linear"), _) => Err(invalid(
            file.path(),
            format!("metadata '{factor_key}'"),
            "linear RoPE scaling needs a positive factor",
        )),
        (Some(other), _) => Err(invalid(
            file.path(),
            format!("metadata '{type_key}'"),
            format!("RoPE scaling '{other}' is not supported (supported: none, linear)"),
        )),
    }
}

/// A short rendering of a value for messages (arrays by type and length only).
fn show(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("an array of {} {:?}", a.len(), a.element_type()),
        Value::String(s) if s.len() > 64 => format!("a string of {} bytes", s.len()),
        other => format!("{other:?}"),
    }
}
