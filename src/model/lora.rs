//! The LoRA seam between the model and whatever computes the deltas.
//!
//! The model calls [`LoraDelta::add_delta`] once per (layer, projection) with the projection's input
//! for every token of the batch and the adapter index of each token. Two implementations:
//! [`HostLora`] here (plain f32 loops over [`StackedAdapters`], for tests and as a fallback), and the
//! device one over `ops::bgmv_shrink` + `ops::bgmv_expand`, which takes the same stacked layout:
//!
//! - per (layer, target), `A` is `[num_adapters, rank, in]` and `B` is `[num_adapters, out, rank]`,
//!   row-major f32, where `rank` is the largest rank among the adapters that target this module
//!   (smaller ranks zero-padded, adapters that do not target it all-zero), and the adapter's scaling
//!   (`lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA) is already multiplied into `B`;
//! - so the device computes `t = bgmv_shrink(x, A, idx, scale = 1.0)` then
//!   `y = bgmv_expand(t, B, idx, slice_offset = 0, add_inputs = true)`, one launch each per module
//!   whatever the mix of adapters in the batch. See [`StackedAdapters::module`].

use super::adapter::StackedAdapters;
use super::config::LlamaConfig;
use crate::{Error, Result};

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

/// Something that adds LoRA deltas to projection outputs, for a batch of rows with one adapter each.
pub trait LoraDelta {
    /// How many adapters the indices may name (valid indices are `-1` and `0..num_adapters()`).
    fn num_adapters(&self) -> usize;

    /// `y[b] += B_i A_i x[b]` for every row `b` with `adapters[b] = i >= 0` (the adapter's scaling
    /// folded into `B_i`); rows with a negative index are left untouched.
    ///
    /// `x` is `[rows, in]`, `y` is `[rows, out]`, row-major, with `rows = adapters.len()` and
    /// `(in, out)` = [`LoraTarget::dims`]. An index `>= num_adapters()` is [`Error::BadIndex`], wrong
    /// lengths [`Error::BadShape`]; in both cases `y` is not modified.
    fn add_delta(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &[f32],
        adapters: &[i64],
        y: &mut [f32],
    ) -> Result<()>;
}

/// Check the arguments of [`LoraDelta::add_delta`] for a model of `config` with `num_adapters`
/// adapters: shared by every implementation so they reject the same inputs.
pub fn check_delta_args(
    config: &LlamaConfig,
    num_adapters: usize,
    layer: usize,
    target: LoraTarget,
    x: &[f32],
    adapters: &[i64],
    y: &[f32],
) -> Result<()> {
    if layer >= config.num_hidden_layers {
        return Err(Error::parameter(
            "layer",
            format!("0..{}", config.num_hidden_layers),
            layer,
        ));
    }
    let (inf, outf) = target.dims(config);
    let rows = adapters.len();
    if x.len() != rows * inf {
        return Err(Error::shape(
            format!("LoRA input x of {target} (layer {layer})"),
            format!("{rows} x {inf} = {} values", rows * inf),
            x.len(),
        ));
    }
    if y.len() != rows * outf {
        return Err(Error::shape(
            format!("LoRA output y of {target} (layer {layer})"),
            format!("{rows} x {outf} = {} values", rows * outf),
            y.len(),
        ));
    }
    for (row, &index) in adapters.iter().enumerate() {
        if index >= num_adapters as i64 {
            return Err(Error::BadIndex {
                row,
                index,
                num_adapters,
            });
        }
    }
    Ok(())
}

/// LoRA deltas computed on the host in f32 from [`StackedAdapters`]: the exact reference for the model
/// tests, and the fallback when no device is used.
///
/// Same arithmetic as the kernels (shrink to the rank, then expand) but skipping the zero padding of
/// small ranks and the modules an adapter does not target.
#[derive(Debug, Clone, Copy)]
pub struct HostLora<'a> {
    stacked: &'a StackedAdapters,
}

impl<'a> HostLora<'a> {
    /// Deltas from these adapters (index `i` = the `i`-th adapter given to [`StackedAdapters::new`]).
    pub fn new(stacked: &'a StackedAdapters) -> Self {
        HostLora { stacked }
    }

    /// The adapters.
    pub fn stacked(&self) -> &'a StackedAdapters {
        self.stacked
    }
}

impl LoraDelta for HostLora<'_> {
    fn num_adapters(&self) -> usize {
        self.stacked.len()
    }

    fn add_delta(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &[f32],
        adapters: &[i64],
        y: &mut [f32],
    ) -> Result<()> {
        let config = self.stacked.config();
        check_delta_args(config, self.stacked.len(), layer, target, x, adapters, y)?;
        let Some(module) = self.stacked.module(layer, target) else {
            return Ok(());
        };
        let (inf, outf) = (module.in_features, module.out_features);
        let rank = module.rank;
        let mut t = vec![0f32; rank];
        for (row, &index) in adapters.iter().enumerate() {
            if index < 0 {
                continue;
            }
            let i = index as usize;
            let r_i = module.ranks[i];
            if r_i == 0 {
                continue;
            }
            let xr = &x[row * inf..(row + 1) * inf];
            let a = &module.a[i * rank * inf..(i + 1) * rank * inf];
            for (r, tr) in t.iter_mut().enumerate().take(r_i) {
                *tr = super::llama::dot(&a[r * inf..(r + 1) * inf], xr);
            }
            let b = &module.b[i * outf * rank..(i + 1) * outf * rank];
            let yr = &mut y[row * outf..(row + 1) * outf];
            for (o, yo) in yr.iter_mut().enumerate() {
                let bo = &b[o * rank..o * rank + r_i];
                *yo += bo.iter().zip(&t[..r_i]).map(|(p, q)| p * q).sum::<f32>();
            }
        }
        Ok(())
    }
}
