//! GGUF, llama.cpp's model file: reading, dequantising, and mapping to Hugging Face Llama weights.
//!
//! - [`reader`]: the container ([`GgufFile`]): header, typed metadata, tensor infos, alignment,
//!   all validated against the file before anything is allocated from a header value;
//! - [`ggml_type`]: tensor element types and their block geometry;
//! - [`dequant`]: ggml blocks to f32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1);
//! - [`names`]: llama.cpp tensor names to Hugging Face names, and the q/k row permutation;
//! - [`hparams`]: [`LlamaConfig`](crate::model::config::LlamaConfig) from `llama.*` metadata;
//! - [`tokenizer`]: the `tokenizers::Tokenizer` and chat template rebuilt from `tokenizer.*` metadata.
//!
//! [`load_gguf`] puts them together into the format-independent [`ModelFiles`].

pub mod dequant;
pub mod ggml_type;
pub mod hparams;
pub mod names;
pub mod reader;
pub mod tokenizer;

pub use ggml_type::GgmlType;
pub use reader::{Array, GgufFile, TensorInfo, Value, ValueType};

use crate::error::Result;
use crate::model::weights::{HostTensor, ModelFiles};
use rayon::prelude::*;
use reader::invalid;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Loads a Llama-architecture GGUF file: configuration, every tensor dequantised to f32 under its
/// Hugging Face name and in Hugging Face layout (`[out, in]`, q/k permutation undone), and the
/// tokenizer with its chat template.
///
/// Errors with [`crate::Error::InvalidFile`] naming the file and the field for anything malformed
/// or unsupported: an architecture other than `llama`, a tensor this loader cannot map, a
/// quantisation type it cannot dequantise, shapes that disagree with the metadata, a missing tensor.
pub fn load_gguf(path: &Path) -> Result<ModelFiles> {
    let file = GgufFile::open(path)?;
    load_from(&file)
}

/// [`load_gguf`] on an already opened file.
pub fn load_from(file: &GgufFile) -> Result<ModelFiles> {
    hparams::architecture(file)?;
    let embedding_rows = file
        .tensor("token_embd.weight")
        .and_then(|t| t.shape().first().copied());
    let tied = file.tensor("output.weight").is_none();
    let config = hparams::llama_config(file, embedding_rows, tied)?;

    // Map names first so that an unknown tensor fails before any work is spent.
    let mut jobs = Vec::with_capacity(file.tensors().len());
    for t in file.tensors() {
        let field = || format!("tensor '{}'", t.name);
        let hf = match names::hf_name(&t.name) {
            Some(hf) => hf,
            None if t.name == "rope_freqs.weight" => {
                return Err(invalid(
                    file.path(),
                    field(),
                    "per-frequency RoPE factors (Llama 3 rope scaling) are not supported",
                ))
            }
            None => {
                return Err(invalid(
                    file.path(),
                    field(),
                    "not a tensor of the Llama architecture this loader maps",
                ))
            }
        };
        let shape = t.shape();
        let expected = expected_shape(&config, &hf);
        if expected.as_deref() != Some(shape.as_slice()) {
            return Err(invalid(
                file.path(),
                field(),
                match expected {
                    Some(e) => {
                        format!("shape {shape:?} (row-major) but the metadata implies {e:?}")
                    }
                    None => format!(
                        "{hf} belongs to no layer below block_count {}",
                        config.num_hidden_layers
                    ),
                },
            ));
        }
        if !dequant::is_supported(t.ggml_type) {
            let names: Vec<_> = dequant::SUPPORTED.iter().map(|t| t.name()).collect();
            return Err(invalid(
                file.path(),
                format!("{}.type", field()),
                format!(
                    "ggml type {} cannot be dequantised yet (supported: {})",
                    t.ggml_type,
                    names.join(", ")
                ),
            ));
        }
        jobs.push((t, hf, shape));
    }
    for hf in required_names(&config) {
        if !jobs.iter().any(|(_, h, _)| *h == hf) {
            let gguf = names::gguf_name(&hf).unwrap_or_default();
            return Err(invalid(
                file.path(),
                format!("tensor '{gguf}'"),
                format!("missing ({hf} is required)"),
            ));
        }
    }

    let tensors = jobs
        .into_par_iter()
        .map(|(t, hf, shape)| {
            let mut data = file.dequantize(t)?;
            if let Some(heads) =
                names::permuted_heads(&hf, config.num_attention_heads, config.num_key_value_heads)
            {
                data =
                    names::unpermute_rows(&data, shape[0], shape[1], heads).ok_or_else(|| {
                        invalid(
                            file.path(),
                            format!("tensor '{}'", t.name),
                            format!("{} rows do not split into {heads} rotary heads", shape[0]),
                        )
                    })?;
            }
            Ok((hf, HostTensor { shape, data }))
        })
        .collect::<Result<HashMap<_, _>>>()?;

    let tokenizer = tokenizer::tokenizer_from_gguf(file)?;
    if let Some(t) = &tokenizer {
        let n = t.tokenizer.get_vocab_size(true);
        if n > config.vocab_size {
            return Err(invalid(
                file.path(),
                "metadata 'tokenizer.ggml.tokens'",
                format!(
                    "tokenizer has {n} tokens, the embedding {} rows",
                    config.vocab_size
                ),
            ));
        }
    }

    Ok(ModelFiles {
        source: describe(file),
        config,
        tensors,
        tokenizer,
    })
}

/// Hugging Face shape of a Llama tensor under `config`, or `None` for a layer past the last.
fn expected_shape(c: &crate::model::config::LlamaConfig, hf: &str) -> Option<Vec<usize>> {
    let (h, ff, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let (q, kv) = (
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
    );
    Some(match hf {
        "model.embed_tokens.weight" | "lm_head.weight" => vec![v, h],
        "model.norm.weight" => vec![h],
        _ => {
            let rest = hf.strip_prefix("model.layers.")?;
            let (layer, suffix) = rest.split_once('.')?;
            if layer.parse::<usize>().ok()? >= c.num_hidden_layers {
                return None;
            }
            match suffix {
                "self_attn.q_proj.weight" => vec![q, h],
                "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, h],
                "self_attn.o_proj.weight" => vec![h, q],
                "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![ff, h],
                "mlp.down_proj.weight" => vec![h, ff],
                "input_layernorm.weight" | "post_attention_layernorm.weight" => vec![h],
                _ => return None,
            }
        }
    })
}

/// Every tensor a Llama model of this configuration needs.
fn required_names(c: &crate::model::config::LlamaConfig) -> Vec<String> {
    let mut v = vec![
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".to_string(),
    ];
    if !c.tie_word_embeddings {
        v.push("lm_head.weight".to_string());
    }
    for i in 0..c.num_hidden_layers {
        for s in [
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
        ] {
            v.push(format!("model.layers.{i}.{s}"));
        }
    }
    v
}

/// One line for `inspect`: file, version, name, tensor count by stored type.
fn describe(file: &GgufFile) -> String {
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for t in file.tensors() {
        *by_type.entry(t.ggml_type.name()).or_default() += 1;
    }
    let types: Vec<_> = by_type.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    let name = file
        .get("general.name")
        .and_then(Value::as_str)
        .map(|n| format!(" '{n}'"))
        .unwrap_or_default();
    let file_name = file
        .path()
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "GGUF v{} {file_name}{name}: {} tensors ({}), dequantised to f32",
        file.version(),
        file.tensors().len(),
        types.join(", ")
    )
}
