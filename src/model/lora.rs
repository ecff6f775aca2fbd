//! The LoRA seam between the model and whatever computes the deltas.
//!
//! The model calls [`LoraDelta::project`] once per (layer, [`LoraGroup`]): with the group's input for
//! every token of the batch, the batch's adapters ([`LoraRows`], checked once per forward), the base
//! model's matmul of the group as a closure, and the group's fused output row (`[q | k | v]`, `o`,
//! `[gate | up]` or `down`) that the closure writes and the delta is added into ([`LoraDelta::add_delta`]
//! is the delta alone). Two
//! implementations: [`HostLora`] here (plain f32 loops over [`StackedAdapters`], for tests and as a
//! fallback), and [`super::DeviceLora`] over `ops::bgmv_shrink` + `ops::bgmv_expand_segmented`, one of
//! each per group. Both take the stacked layout of [`StackedAdapters::module`]:
//!
//! - per (layer, target), `A` is `[num_adapters, rank, in]` and `B` is `[num_adapters, out, rank]`,
//!   row-major f32, where `rank` is the largest rank among the adapters that target this module
//!   (smaller ranks zero-padded, adapters that do not target it all-zero), and the adapter's scaling
//!   (`lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA) is already multiplied into `B`.
//!
//! Rows with a negative adapter index (the amateur rows of CoLD, requests without an adapter) get no
//! delta and cost nothing.

use super::adapter::StackedAdapters;
use super::config::LlamaConfig;
use super::targets::LoraGroup;
use super::vector::dot;
use crate::contracts::CheckedIndices;
use crate::{Error, Result};

/// The adapter of each row of a batch, checked against the number of adapters once, where the batch
/// enters the model: every [`LoraDelta`] call of the forward trusts it.
///
/// ```
/// use ascend_cold::model::LoraRows;
/// let rows = LoraRows::new(vec![0, -1, 1, 0], 2)?;
/// assert_eq!(rows.active_rows(), &[0, 2, 3]);
/// assert_eq!(rows.active_indices(), &[0, 1, 0]);
/// assert!(LoraRows::new(vec![2], 2).is_err()); // only adapters 0 and 1 exist
/// # Ok::<(), ascend_cold::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraRows {
    indices: Vec<i64>,
    active_rows: Vec<usize>,
    active_indices: Vec<i64>,
    num_adapters: usize,
}

impl LoraRows {
    /// Each row's adapter index: `0..num_adapters`, or negative for none.
    ///
    /// # Errors
    /// [`Error::BadIndex`] naming the first row whose index is `>= num_adapters`.
    pub fn new(indices: Vec<i64>, num_adapters: usize) -> Result<Self> {
        CheckedIndices::new(&indices, num_adapters)?;
        Ok(LoraRows::trusted(indices, num_adapters))
    }

    /// Builds the row lists of indices already checked against `num_adapters`.
    fn trusted(indices: Vec<i64>, num_adapters: usize) -> Self {
        let active_rows: Vec<usize> = (0..indices.len()).filter(|&r| indices[r] >= 0).collect();
        let active_indices = active_rows.iter().map(|&r| indices[r]).collect();
        LoraRows {
            indices,
            active_rows,
            active_indices,
            num_adapters,
        }
    }

    /// Row `r` repeated `counts[r]` times (one entry per token of a row), checked by `self`.
    pub(crate) fn repeat_rows(&self, counts: impl Iterator<Item = usize>) -> LoraRows {
        let indices: Vec<i64> = self
            .indices
            .iter()
            .zip(counts)
            .flat_map(|(&index, n)| std::iter::repeat_n(index, n))
            .collect();
        LoraRows::trusted(indices, self.num_adapters)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for a batch of no rows.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Every row's index, as given.
    pub fn indices(&self) -> &[i64] {
        &self.indices
    }

    /// The rows that have an adapter, ascending.
    pub fn active_rows(&self) -> &[usize] {
        &self.active_rows
    }

    /// The adapter of each row of [`Self::active_rows`] (all in `0..num_adapters`).
    pub fn active_indices(&self) -> &[i64] {
        &self.active_indices
    }

    /// [`Self::active_indices`] as the ops take them: already checked, so not scanned again.
    pub fn active_checked(&self) -> CheckedIndices<'_> {
        CheckedIndices::already_checked(&self.active_indices, self.num_adapters)
    }

    /// The bound the indices were checked against.
    pub fn num_adapters(&self) -> usize {
        self.num_adapters
    }
}

/// Something that adds LoRA deltas to a layer's projection outputs, for a batch of rows with one
/// adapter each.
pub trait LoraDelta {
    /// How many adapters the indices may name (valid indices are negative and `0..num_adapters()`).
    fn num_adapters(&self) -> usize;

    /// For every row `b` with adapter `i >= 0` and every target `t` of `group`:
    /// `y[b, columns of t] += B_{t,i} A_{t,i} x[b]` (the adapter's scaling folded into `B`); rows
    /// without an adapter, and targets adapter `i` does not adapt, are left untouched.
    ///
    /// `x` is `[rows, in]`, `y` is `[rows, out]`, row-major, with `rows = rows.len()` and `(in, out)`
    /// = [`LoraGroup::dims`]; the columns of each target are [`LoraGroup::columns`]. Wrong lengths are
    /// [`Error::BadShape`], `rows` checked against more adapters than this delta has
    /// [`Error::BadParameter`]; in both cases `y` is not modified.
    fn add_delta(
        &self,
        layer: usize,
        group: LoraGroup,
        x: &[f32],
        rows: &LoraRows,
        y: &mut [f32],
    ) -> Result<()>;

    /// The group's whole projection: `base(y)` writes the base model's output (`[rows, out]`) into
    /// `y`, then the delta of [`Self::add_delta`] is added. The default does exactly that, in that
    /// order; a device implementation starts the delta first, so that the device computes it while
    /// the host runs `base`. Errors as [`Self::add_delta`], plus a `y` that `base` left at another
    /// length; on error `y` holds no delta, and an implementation that failed before running `base`
    /// leaves it as it was (the model discards it either way).
    fn project(
        &self,
        layer: usize,
        group: LoraGroup,
        x: &[f32],
        rows: &LoraRows,
        base: &mut dyn FnMut(&mut Vec<f32>),
        y: &mut Vec<f32>,
    ) -> Result<()> {
        base(y);
        self.add_delta(layer, group, x, rows, y)
    }
}

/// Check the arguments of [`LoraDelta::add_delta`] for a model of `config` with `num_adapters`
/// adapters: shared by every implementation so they reject the same inputs.
pub fn check_delta_args(
    config: &LlamaConfig,
    num_adapters: usize,
    layer: usize,
    group: LoraGroup,
    x: &[f32],
    rows: &LoraRows,
    y: &[f32],
) -> Result<()> {
    check_delta_input(config, num_adapters, layer, group, x, rows)?;
    let outf = group.dims(config).1;
    check_delta_len(layer, group, "output y", y.len(), rows.len(), outf)
}

/// [`check_delta_args`] without the output (for [`LoraDelta::project`], whose `y` is sized by `base`).
pub(crate) fn check_delta_input(
    config: &LlamaConfig,
    num_adapters: usize,
    layer: usize,
    group: LoraGroup,
    x: &[f32],
    rows: &LoraRows,
) -> Result<()> {
    if layer >= config.num_hidden_layers {
        return Err(Error::parameter(
            "layer",
            format!("0..{}", config.num_hidden_layers),
            layer,
        ));
    }
    if rows.num_adapters() > num_adapters {
        return Err(Error::parameter(
            "LoRA rows",
            format!("indices checked against at most {num_adapters} adapters"),
            format!("indices checked against {}", rows.num_adapters()),
        ));
    }
    let inf = group.dims(config).0;
    check_delta_len(layer, group, "input x", x.len(), rows.len(), inf)
}

/// `values` (the length of `what`) is `rows x width`.
pub(crate) fn check_delta_len(
    layer: usize,
    group: LoraGroup,
    what: &str,
    values: usize,
    rows: usize,
    width: usize,
) -> Result<()> {
    if Some(values) != rows.checked_mul(width) {
        return Err(Error::shape(
            format!("LoRA {what} of {group} (layer {layer})"),
            format!("{rows} x {width} values"),
            values,
        ));
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
        group: LoraGroup,
        x: &[f32],
        rows: &LoraRows,
        y: &mut [f32],
    ) -> Result<()> {
        let config = self.stacked.config();
        check_delta_args(config, self.stacked.len(), layer, group, x, rows, y)?;
        let (inf, width) = group.dims(config);
        for (target, column) in group.columns(config) {
            let Some(module) = self.stacked.module(layer, target) else {
                continue;
            };
            let (outf, rank) = (module.out_features, module.rank);
            let mut t = vec![0f32; rank];
            for (&row, &index) in rows.active_rows().iter().zip(rows.active_indices()) {
                let i = index as usize;
                let r_i = module.ranks[i];
                if r_i == 0 {
                    continue;
                }
                let xr = &x[row * inf..(row + 1) * inf];
                let a = &module.a[i * rank * inf..(i + 1) * rank * inf];
                for (r, tr) in t.iter_mut().enumerate().take(r_i) {
                    *tr = dot(&a[r * inf..(r + 1) * inf], xr);
                }
                let b = &module.b[i * outf * rank..(i + 1) * outf * rank];
                let yr = &mut y[row * width + column..row * width + column + outf];
                for (o, yo) in yr.iter_mut().enumerate() {
                    let bo = &b[o * rank..o * rank + r_i];
                    *yo += bo.iter().zip(&t[..r_i]).map(|(p, q)| p * q).sum::<f32>();
                }
            }
        }
        Ok(())
    }
}
