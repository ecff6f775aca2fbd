//! The key/value cache of one sequence.
//!
//! Layout: per layer, keys and values as `[len, num_key_value_heads * head_dim]` row-major f32, already
//! rotated (RoPE applied to keys before they are stored, as Hugging Face does). Growing is amortised
//! (`Vec`), bounded by [`KvCache::capacity`], which never exceeds the model's
//! `max_position_embeddings`.

use super::config::LlamaConfig;
use crate::{Error, Result};

/// The keys and values of one layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerKv {
    /// `[len, kv_dim]`.
    pub(crate) k: Vec<f32>,
    /// `[len, kv_dim]`.
    pub(crate) v: Vec<f32>,
}

/// The KV cache of one sequence (one batch row of [`super::llama::LlamaModel::forward`]).
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    len: usize,
    capacity: usize,
    kv_dim: usize,
}

impl KvCache {
    /// An empty cache for `config`, able to hold `max_position_embeddings` positions.
    pub fn new(config: &LlamaConfig) -> Self {
        KvCache {
            layers: vec![LayerKv::default(); config.num_hidden_layers],
            len: 0,
            capacity: config.max_position_embeddings,
            kv_dim: config.num_key_value_heads * config.head_dim,
        }
    }

    /// An empty cache limited to `capacity` positions (at most the model's `max_position_embeddings`).
    pub fn with_capacity(config: &LlamaConfig, capacity: usize) -> Result<Self> {
        if capacity == 0 || capacity > config.max_position_embeddings {
            return Err(Error::parameter(
                "capacity",
                format!(
                    "1..={} (max_position_embeddings)",
                    config.max_position_embeddings
                ),
                capacity,
            ));
        }
        let mut cache = KvCache::new(config);
        cache.capacity = capacity;
        Ok(cache)
    }

    /// Positions held (the position the next token gets).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions this cache may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forget every position.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keep the first `len` positions (no-op when `len >= self.len()`): rewinds a sequence, e.g. to
    /// re-run a step or to share a prompt prefix.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for layer in &mut self.layers {
            layer.k.truncate(len * self.kv_dim);
            layer.v.truncate(len * self.kv_dim);
        }
        self.len = len;
    }

    /// Bytes held by keys and values.
    pub fn bytes(&self) -> usize {
        self.layers.len() * 2 * self.len * self.kv_dim * std::mem::size_of::<f32>()
    }

    /// Whether this cache has the geometry of `config`.
    pub(crate) fn matches(&self, config: &LlamaConfig) -> bool {
        self.layers.len() == config.num_hidden_layers
            && self.kv_dim == config.num_key_value_heads * config.head_dim
    }

    /// Cut every layer back to `len` positions, whatever a failed forward left behind.
    pub(crate) fn rollback(&mut self, len: usize) {
        for layer in &mut self.layers {
            layer.k.truncate(len * self.kv_dim);
            layer.v.truncate(len * self.kv_dim);
        }
        self.len = len;
    }

    /// Record that every layer got `n` more positions (called by the model after appending).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self
            .layers
            .iter()
            .all(|l| l.k.len() == self.len * self.kv_dim && l.v.len() == self.len * self.kv_dim));
    }
}
