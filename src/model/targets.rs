//! The projections LoRA can target, and how the model computes them: the seven Llama projections
//! ([`LoraTarget`]) in the four fused matmuls of a layer ([`LoraGroup`]).
//!
//! A layer computes q, k and v as one matmul whose output row is `[q | k | v]`, and gate and up as one
//! whose row is `[gate | up]`; a LoRA delta is added to such a row as a whole (docs/ARCHITECTURE.md,
//! "The LoRA path"), so the group fixes the order and offsets of its targets' columns.

use super::config::LlamaConfig;

/// The seven linear projections of a Llama layer that LoRA can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl LoraTarget {
    /// Every target, in the order used for per-layer tables.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// Position in [`LoraTarget::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The Hugging Face / PEFT module name (`q_proj`, ..., `down_proj`).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// The module path inside a layer (`self_attn.q_proj`, `mlp.down_proj`, ...).
    pub fn module_path(self) -> &'static str {
        match self {
            LoraTarget::Q => "self_attn.q_proj",
            LoraTarget::K => "self_attn.k_proj",
            LoraTarget::V => "self_attn.v_proj",
            LoraTarget::O => "self_attn.o_proj",
            LoraTarget::Gate => "mlp.gate_proj",
            LoraTarget::Up => "mlp.up_proj",
            LoraTarget::Down => "mlp.down_proj",
        }
    }

    /// Parse a module name as [`LoraTarget::hf_name`] gives it.
    pub fn from_hf_name(name: &str) -> Option<LoraTarget> {
        LoraTarget::ALL.into_iter().find(|t| t.hf_name() == name)
    }

    /// `(in_features, out_features)` of this projection in a model of `config`.
    pub fn dims(self, config: &LlamaConfig) -> (usize, usize) {
        let q = config.num_attention_heads * config.head_dim;
        let kv = config.num_key_value_heads * config.head_dim;
        let h = config.hidden_size;
        let i = config.intermediate_size;
        match self {
            LoraTarget::Q => (h, q),
            LoraTarget::K | LoraTarget::V => (h, kv),
            LoraTarget::O => (q, h),
            LoraTarget::Gate | LoraTarget::Up => (h, i),
            LoraTarget::Down => (i, h),
        }
    }
}

impl std::fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hf_name())
    }
}

/// The projections one fused matmul of a layer computes, in the order of its output columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraGroup {
    /// `q_proj`, `k_proj`, `v_proj`: one matmul of the normed input, row `[q | k | v]`.
    Qkv,
    /// `o_proj` alone.
    O,
    /// `gate_proj`, `up_proj`: one matmul of the normed input, row `[gate | up]`.
    GateUp,
    /// `down_proj` alone.
    Down,
}

impl LoraGroup {
    /// Every group, in the order a layer computes them.
    pub const ALL: [LoraGroup; 4] = [
        LoraGroup::Qkv,
        LoraGroup::O,
        LoraGroup::GateUp,
        LoraGroup::Down,
    ];

    /// The group's projections, in the order of their columns in the group's output row.
    pub fn targets(self) -> &'static [LoraTarget] {
        match self {
            LoraGroup::Qkv => &[LoraTarget::Q, LoraTarget::K, LoraTarget::V],
            LoraGroup::O => &[LoraTarget::O],
            LoraGroup::GateUp => &[LoraTarget::Gate, LoraTarget::Up],
            LoraGroup::Down => &[LoraTarget::Down],
        }
    }

    /// The group that computes `target`.
    pub fn of(target: LoraTarget) -> LoraGroup {
        match target {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V => LoraGroup::Qkv,
            LoraTarget::O => LoraGroup::O,
            LoraTarget::Gate | LoraTarget::Up => LoraGroup::GateUp,
            LoraTarget::Down => LoraGroup::Down,
        }
    }

    /// `(in_features, out_features)` of the group's matmul: the shared input width, and the width of
    /// its output row (the sum of its targets' output widths).
    pub fn dims(self, config: &LlamaConfig) -> (usize, usize) {
        let targets = self.targets();
        let in_features = targets[0].dims(config).0;
        let out_features = targets.iter().map(|t| t.dims(config).1).sum();
        (in_features, out_features)
    }

    /// Each target of the group with the first column of its outputs in the group's output row.
    pub fn columns(self, config: &LlamaConfig) -> impl Iterator<Item = (LoraTarget, usize)> + '_ {
        let mut offset = 0;
        self.targets().iter().map(move |&t| {
            let start = offset;
            offset += t.dims(config).1;
            (t, start)
        })
    }
}

impl std::fmt::Display for LoraGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.targets().iter().map(|t| t.hf_name()).collect();
        f.write_str(&names.join("+"))
    }
}
