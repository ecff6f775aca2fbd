//! The model side: a Llama-architecture causal LM on the host CPU, its file formats and adapters.
//!
//! - [`config`], [`weights`]: what every loader produces ([`weights::ModelFiles`]: f32 tensors by
//!   Hugging Face name and layout);
//! - [`hf`]: Hugging Face folders (safetensors, tokenizer, chat template); [`load_model`] dispatches
//!   on the path;
//! - [`llama`]: the model and its batched forward; [`kv_cache`]: one sequence's keys and values;
//! - [`targets`]: the projections LoRA adapts and the fused groups the model computes them in;
//!   [`adapter`]: PEFT adapters and their stacked layout; [`lora`]: the seam through which every LoRA
//!   delta is computed (host fallback), [`device_lora`]: the same through the BGMV ops on a device;
//! - [`inspect`]: the report behind `ascend-cold inspect`.

pub mod adapter;
pub mod config;
pub mod device_lora;
pub mod gguf;
pub mod hf;
pub mod inspect;
pub mod kv_cache;
pub mod llama;
pub mod lora;
pub mod targets;
mod vector;
pub mod weights;

pub use adapter::{Adapter, AdapterConfig, StackedAdapters};
pub use config::{LlamaConfig, RopeScaling};
pub use device_lora::DeviceLora;
pub use kv_cache::KvCache;
pub use llama::{LlamaModel, Logits, Row, WeightDtype};
pub use lora::{HostLora, LoraDelta, LoraRows};
pub use targets::{LoraGroup, LoraTarget};
pub use weights::ModelFiles;

use std::path::Path;

/// Load a model from a Hugging Face folder or a `.gguf` file.
pub fn load_model(path: &Path) -> crate::Result<ModelFiles> {
    if path.is_dir() {
        return hf::load_hf(path);
    }
    let is_gguf = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        return gguf::load_gguf(path);
    }
    if !path.exists() {
        return Err(crate::Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    Err(crate::Error::InvalidFile {
        path: path.to_path_buf(),
        field: "format".into(),
        detail: "expected a Hugging Face model folder or a .gguf file".into(),
    })
}
