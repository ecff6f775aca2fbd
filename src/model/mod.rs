//! The model side: a Llama-architecture causal LM on the host CPU, its file formats and adapters.

pub mod config;
pub mod gguf;
pub mod weights;
