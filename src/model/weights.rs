//! Loaded weights, by Hugging Face tensor name, independent of the file format they came from.
//!
//! Every loader (Hugging Face safetensors, GGUF) produces a [`ModelFiles`]: tensors named as in
//! Hugging Face Llama checkpoints (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`,
//! `model.layers.{i}.mlp.gate_proj.weight`, `model.norm.weight`, `lm_head.weight`, ...), in Hugging Face
//! layout (`[out, in]` row-major for linear layers; GGUF's q/k row permutation already undone),
//! dequantised to f32.

use super::config::LlamaConfig;
use std::collections::HashMap;

/// One dense tensor in f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first (Hugging Face order).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// A tokenizer plus the chat template that goes with the model, when the files carry one.
pub struct TokenizerFiles {
    /// The tokenizer (Hugging Face `tokenizers`).
    pub tokenizer: tokenizers::Tokenizer,
    /// The Jinja chat template (`tokenizer_config.json` `chat_template`, or GGUF `tokenizer.chat_template`).
    pub chat_template: Option<String>,
}

/// What a model path yields: configuration, weights and tokenizer.
///
/// The model (`LlamaModel::new`) converts the weights it needs into its own storage, so once it is
/// built the f32 `tensors` here are dead weight: take the tokenizer out (`files.tokenizer.take()`)
/// and drop the rest. For SmolLM2-135M with bf16 model weights that takes the resident set from
/// about 806 MB to 374 MB.
pub struct ModelFiles {
    /// Architecture.
    pub config: LlamaConfig,
    /// Weights by Hugging Face name, dequantised to f32.
    pub tensors: HashMap<String, HostTensor>,
    /// The tokenizer, when the files carry one.
    pub tokenizer: Option<TokenizerFiles>,
    /// A one-line description of where the weights came from and their stored dtypes (for `inspect`).
    pub source: String,
}
