//! A Llama-architecture causal LM on the host CPU.
//!
//! Architecture (facts from the Llama papers and Hugging Face `modeling_llama.py`, read, not copied):
//! pre-norm decoder layers `x += o_proj(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))`,
//! `x += down_proj(silu(gate_proj(n)) * up_proj(n))` with `n = rmsnorm(x)`; RMSNorm
//! `w * x / sqrt(mean(x^2) + eps)`; RoPE in the "rotate half" convention (dimension `i` pairs with
//! `i + head_dim/2`, not with `i + 1`), with linear or llama3 frequency scaling; grouped-query
//! attention (query head `h` reads key/value head `h / (heads / kv_heads)`); a final RMSNorm and an LM
//! head that may be the embedding matrix (tied).
//!
//! Performance model: a decode step is memory-bound (each weight is used once per token), so
//! [`LlamaModel::forward`] runs every projection for all tokens of the batch at once, weight rows
//! outermost: each weight row is read (and, for bf16, widened to f32) once per step and multiplied
//! with every token's activation while it sits in cache, by a micro-kernel register-blocked over
//! weight rows and tokens (see `llama/matmul.rs`); blocks of weight rows are split across rayon's threads.
//! Under CoLD every request is two rows of one batch, so batch 2 must cost about what batch 1 does.
//! The per-(weight row, token) arithmetic does not depend on the batch, so a row computed in a batch
//! equals the row computed alone, bit for bit.

use super::config::{LlamaConfig, RopeScaling};
use super::hf::expected_tensors;
use super::kv_cache::KvCache;
use super::lora::{LoraDelta, LoraRows};
use super::targets::LoraGroup;
use super::vector::dot;
use super::weights::{HostTensor, ModelFiles};
use crate::{Error, Result};
use rayon::prelude::*;

mod matmul;
use matmul::Weights;

/// How the weight matrices are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDtype {
    /// f32: exactly the loaded values (parity tests against f32 references).
    F32,
    /// bf16 (round to nearest even from the loaded f32): half the bytes per step, so about twice the
    /// decode speed; activations and accumulation stay f32.
    #[default]
    Bf16,
}

/// Round f32 to bf16 bits, nearest-even (NaN stays NaN).
fn to_bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

#[inline(always)]
fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

#[derive(Debug, Clone)]
enum Store {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

/// A row-major `[rows, cols]` weight matrix.
#[derive(Debug, Clone)]
struct Matrix {
    rows: usize,
    cols: usize,
    store: Store,
}

impl Matrix {
    /// Stack the rows of `parts` (all with `cols` columns) into one matrix.
    fn stack(parts: &[&HostTensor], dtype: WeightDtype) -> Matrix {
        let cols = parts[0].shape[1];
        let rows = parts.iter().map(|p| p.shape[0]).sum();
        let values = parts.iter().flat_map(|p| p.data.iter().copied());
        let store = match dtype {
            WeightDtype::F32 => Store::F32(values.collect()),
            WeightDtype::Bf16 => Store::Bf16(values.map(to_bf16).collect()),
        };
        Matrix { rows, cols, store }
    }

    fn bytes(&self) -> usize {
        match &self.store {
            Store::F32(v) => v.len() * 4,
            Store::Bf16(v) => v.len() * 2,
        }
    }

    fn weights(&self) -> Weights<'_> {
        match &self.store {
            Store::F32(v) => Weights::F32(v),
            Store::Bf16(v) => Weights::Bf16(v),
        }
    }

    /// `y = x @ self^T` for `n` tokens: `x` is `[n, cols]`, `y` `[n, rows]` (resized to fit).
    fn matmul_into(&self, x: &[f32], n: usize, y: &mut Vec<f32>) {
        y.resize(n * self.rows, 0.0);
        matmul::matmul(self.weights(), self.rows, self.cols, x, n, y);
    }

    /// Row `r` widened to f32 into `out`.
    fn row_into(&self, r: usize, out: &mut [f32]) {
        let range = r * self.cols..(r + 1) * self.cols;
        match &self.store {
            Store::F32(v) => out.copy_from_slice(&v[range]),
            Store::Bf16(v) => {
                for (o, &b) in out.iter_mut().zip(&v[range]) {
                    *o = bf16_to_f32(b);
                }
            }
        }
    }
}

/// Copy columns `off..off + width` of the `[n, stride]` matrix `y` into `out` (`[n, width]`).
fn columns_into(y: &[f32], stride: usize, off: usize, width: usize, out: &mut Vec<f32>) {
    out.clear();
    for row in y.chunks_exact(stride) {
        out.extend_from_slice(&row[off..off + width]);
    }
}

/// RMSNorm of each `w.len()`-wide row of `x`, into `out` (resized to fit).
fn rms_norm_into(x: &[f32], w: &[f32], eps: f32, out: &mut Vec<f32>) {
    let d = w.len();
    out.resize(x.len(), 0.0);
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f64 = xr.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let inv = 1.0 / ((ss / d as f64) as f32 + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = g * (v * inv);
        }
    }
}

/// RoPE inverse frequencies for `config`, scaling applied (Hugging Face `rope_type` semantics).
fn inv_freqs(config: &LlamaConfig) -> Vec<f32> {
    let d = config.head_dim;
    let base = config.rope_theta as f64;
    let plain = (0..d / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / d as f64));
    match config.rope_scaling {
        RopeScaling::None => plain.map(|f| f as f32).collect(),
        RopeScaling::Linear { factor } => plain.map(|f| (f / factor as f64) as f32).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let (factor, low, high) = (
                factor as f64,
                low_freq_factor as f64,
                high_freq_factor as f64,
            );
            let old = original_max_position_embeddings as f64;
            let low_wavelen = old / low;
            let high_wavelen = old / high;
            plain
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let f = if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    };
                    f as f32
                })
                .collect()
        }
    }
}

/// Rotate each `head_dim` slice of `x` (`[n, heads * head_dim]`) by its token's position.
fn apply_rope(x: &mut [f32], positions: &[usize], head_dim: usize, inv_freq: &[f32]) {
    let half = head_dim / 2;
    let width = x.len() / positions.len().max(1);
    let mut cos = vec![0f32; half];
    let mut sin = vec![0f32; half];
    for (row, &pos) in x.chunks_exact_mut(width).zip(positions) {
        for i in 0..half {
            // As in the reference: the angle is an f32 product, its cos/sin rounded to f32.
            let angle = (inv_freq[i] * pos as f32) as f64;
            cos[i] = angle.cos() as f32;
            sin[i] = angle.sin() as f32;
        }
        for head in row.chunks_exact_mut(head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

struct Layer {
    input_norm: Vec<f32>,
    post_norm: Vec<f32>,
    /// q, k, v stacked: `[q_dim + 2 * kv_dim, hidden]`.
    qkv: Matrix,
    o: Matrix,
    /// gate, up stacked: `[2 * intermediate, hidden]`.
    gate_up: Matrix,
    down: Matrix,
}

/// Last-position logits of each row: `[rows, vocab]` f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    /// Number of rows (= rows given to the forward).
    pub rows: usize,
    /// Vocabulary size (`config.vocab_size`).
    pub vocab: usize,
    /// `rows * vocab` values.
    pub data: Vec<f32>,
}

impl Logits {
    /// The logits of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
}

/// One batch row of a forward: a sequence's new tokens, its cache and its adapter.
#[derive(Debug)]
pub struct Row<'a> {
    /// Tokens to append (one for a decode step, the prompt for a prefill); at least one.
    pub tokens: &'a [u32],
    /// The sequence's cache; its length is the position of `tokens[0]`.
    pub cache: &'a mut KvCache,
    /// Adapter index for every token of this row; negative = the base model.
    pub adapter: i64,
}

/// A Llama-architecture causal LM with resident weights on the host.
pub struct LlamaModel {
    config: LlamaConfig,
    dtype: WeightDtype,
    embed: Matrix,
    /// `None` when tied to `embed`.
    lm_head: Option<Matrix>,
    final_norm: Vec<f32>,
    layers: Vec<Layer>,
    inv_freq: Vec<f32>,
}

impl std::fmt::Debug for LlamaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaModel")
            .field("config", &self.config)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

/// Check that `config` describes a model this implementation can run.
pub(crate) fn check_config(c: &LlamaConfig) -> Result<()> {
    let dims = [
        ("vocab_size", c.vocab_size),
        ("hidden_size", c.hidden_size),
        ("intermediate_size", c.intermediate_size),
        ("num_hidden_layers", c.num_hidden_layers),
        ("num_attention_heads", c.num_attention_heads),
        ("num_key_value_heads", c.num_key_value_heads),
        ("head_dim", c.head_dim),
        ("max_position_embeddings", c.max_position_embeddings),
    ];
    for (name, v) in dims {
        if v == 0 || v > super::hf::MAX_DIM {
            return Err(Error::parameter(
                name,
                format!("1..={}", super::hf::MAX_DIM),
                v,
            ));
        }
    }
    if c.num_hidden_layers > super::hf::MAX_LAYERS {
        return Err(Error::parameter(
            "num_hidden_layers",
            format!("1..={}", super::hf::MAX_LAYERS),
            c.num_hidden_layers,
        ));
    }
    if c.num_attention_heads % c.num_key_value_heads != 0 {
        return Err(Error::parameter(
            "num_key_value_heads",
            format!(
                "a divisor of num_attention_heads ({})",
                c.num_attention_heads
            ),
            c.num_key_value_heads,
        ));
    }
    if c.head_dim % 2 != 0 {
        return Err(Error::parameter(
            "head_dim",
            "an even number (RoPE)",
            c.head_dim,
        ));
    }
    if !(c.rms_norm_eps.is_finite() && c.rms_norm_eps > 0.0) {
        return Err(Error::parameter(
            "rms_norm_eps",
            "finite and > 0",
            c.rms_norm_eps,
        ));
    }
    if !(c.rope_theta.is_finite() && c.rope_theta > 0.0) {
        return Err(Error::parameter(
            "rope_theta",
            "finite and > 0",
            c.rope_theta,
        ));
    }
    Ok(())
}

impl LlamaModel {
    /// Build the model from loaded files, keeping the weights as `dtype`.
    ///
    /// Every tensor the architecture needs must be present with its exact shape (`lm_head.weight`
    /// only when the embeddings are not tied); a missing or misshapen one is [`Error::BadShape`]
    /// naming the tensor.
    pub fn new(files: &ModelFiles, dtype: WeightDtype) -> Result<Self> {
        let config = files.config.clone();
        check_config(&config)?;
        for (name, shape) in expected_tensors(&config) {
            if name == "lm_head.weight" && config.tie_word_embeddings {
                continue;
            }
            match files.tensors.get(&name) {
                None => {
                    return Err(Error::shape(
                        format!("tensor {name}"),
                        format!("{shape:?}"),
                        "missing",
                    ))
                }
                Some(t) if t.shape != shape || t.data.len() != shape.iter().product::<usize>() => {
                    return Err(Error::shape(
                        format!("tensor {name}"),
                        format!("{shape:?}"),
                        format!("{:?} with {} values", t.shape, t.data.len()),
                    ))
                }
                Some(_) => {}
            }
        }
        let t = |name: String| &files.tensors[&name];
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                let p = format!("model.layers.{l}");
                Layer {
                    input_norm: t(format!("{p}.input_layernorm.weight")).data.clone(),
                    post_norm: t(format!("{p}.post_attention_layernorm.weight"))
                        .data
                        .clone(),
                    qkv: Matrix::stack(
                        &[
                            t(format!("{p}.self_attn.q_proj.weight")),
                            t(format!("{p}.self_attn.k_proj.weight")),
                            t(format!("{p}.self_attn.v_proj.weight")),
                        ],
                        dtype,
                    ),
                    o: Matrix::stack(&[t(format!("{p}.self_attn.o_proj.weight"))], dtype),
                    gate_up: Matrix::stack(
                        &[
                            t(format!("{p}.mlp.gate_proj.weight")),
                            t(format!("{p}.mlp.up_proj.weight")),
                        ],
                        dtype,
                    ),
                    down: Matrix::stack(&[t(format!("{p}.mlp.down_proj.weight"))], dtype),
                }
            })
            .collect();
        let embed = Matrix::stack(&[t("model.embed_tokens.weight".into())], dtype);
        let lm_head = (!config.tie_word_embeddings)
            .then(|| Matrix::stack(&[t("lm_head.weight".into())], dtype));
        Ok(LlamaModel {
            inv_freq: inv_freqs(&config),
            final_norm: t("model.norm.weight".into()).data.clone(),
            config,
            dtype,
            embed,
            lm_head,
            layers,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// How the weights are held.
    pub fn weight_dtype(&self) -> WeightDtype {
        self.dtype
    }

    /// An empty cache for one sequence of this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    /// Bytes of weights read by one decode step (every projection and the LM head; one embedding
    /// row and the norms are negligible and not counted).
    pub fn step_weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| l.qkv.bytes() + l.o.bytes() + l.gate_up.bytes() + l.down.bytes())
            .sum();
        layers + self.lm_head.as_ref().unwrap_or(&self.embed).bytes()
    }

    /// Bytes of all resident weights.
    pub fn resident_bytes(&self) -> usize {
        let norms = (self.layers.len() * 2 + 1) * self.config.hidden_size * 4;
        let layers: usize = self
            .layers
            .iter()
            .map(|l| l.qkv.bytes() + l.o.bytes() + l.gate_up.bytes() + l.down.bytes())
            .sum();
        layers + norms + self.embed.bytes() + self.lm_head.as_ref().map_or(0, Matrix::bytes)
    }

    /// Check a batch before anything is modified.
    fn validate(&self, rows: &[Row<'_>], num_adapters: usize) -> Result<LoraRows> {
        let vocab = self.config.vocab_size;
        for (r, row) in rows.iter().enumerate() {
            if row.tokens.is_empty() {
                return Err(Error::parameter(
                    "tokens",
                    format!("at least one token in row {r}"),
                    "none",
                ));
            }
            if let Some(&bad) = row.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::parameter(
                    "token id",
                    format!("< vocab_size {vocab} (row {r})"),
                    bad,
                ));
            }
            if !row.cache.matches(&self.config) {
                return Err(Error::parameter(
                    "cache",
                    "a KvCache made for this model's layers and key/value width",
                    format!("a cache of another geometry (row {r})"),
                ));
            }
            let end = row.cache.len() + row.tokens.len();
            if end > row.cache.capacity() {
                return Err(Error::parameter(
                    "positions",
                    format!(
                        "cache length + new tokens <= {} (row {r})",
                        row.cache.capacity()
                    ),
                    format!("{} + {} = {end}", row.cache.len(), row.tokens.len()),
                ));
            }
        }
        let per_row = LoraRows::new(rows.iter().map(|r| r.adapter).collect(), num_adapters)?;
        Ok(per_row.repeat_rows(rows.iter().map(|r| r.tokens.len())))
    }

    /// Append each row's tokens to its cache and return the logits after each row's last token.
    ///
    /// All tokens of all rows go through every projection together (one read of each weight matrix
    /// per call); attention is per row against its own cache. A row with a non-negative adapter gets
    /// that adapter's deltas from `lora` on every projection it targets.
    ///
    /// Errors (nothing is modified): a row without tokens, a token `>= vocab_size`, an adapter index
    /// `>= lora.num_adapters()` (any non-negative one when `lora` is `None`), a cache of another
    /// model, or more positions than the cache's capacity. If `lora` fails midway, every cache is
    /// rolled back to its length before the call.
    pub fn forward(&self, rows: &mut [Row<'_>], lora: Option<&dyn LoraDelta>) -> Result<Logits> {
        let num_adapters = lora.map_or(0, |l| l.num_adapters());
        let adapters = self.validate(rows, num_adapters)?;
        let before: Vec<usize> = rows.iter().map(|r| r.cache.len()).collect();
        let result = self.forward_checked(rows, &adapters, lora);
        if result.is_err() {
            for (row, &len) in rows.iter_mut().zip(&before) {
                row.cache.rollback(len);
            }
        }
        result
    }

    fn forward_checked(
        &self,
        rows: &mut [Row<'_>],
        adapters: &LoraRows,
        lora: Option<&dyn LoraDelta>,
    ) -> Result<Logits> {
        let c = &self.config;
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let (qd, kvd, inter) = (nh * hd, nkv * hd, c.intermediate_size);

        // Flatten the batch: token t belongs to row_of[t], at position pos[t].
        let n: usize = rows.iter().map(|r| r.tokens.len()).sum();
        let mut row_of = Vec::with_capacity(n);
        let mut pos = Vec::with_capacity(n);
        let mut x = vec![0f32; n * h];
        let mut t = 0;
        for (r, row) in rows.iter().enumerate() {
            let start = row.cache.len();
            for (i, &tok) in row.tokens.iter().enumerate() {
                row_of.push(r);
                pos.push(start + i);
                self.embed
                    .row_into(tok as usize, &mut x[t * h..(t + 1) * h]);
                t += 1;
            }
        }
        let lora = lora.filter(|_| !adapters.active_rows().is_empty());
        // A projection with its LoRA delta (the device may compute the delta while the host runs the
        // base matmul: LoraDelta::project).
        let project = |layer: usize,
                       group: LoraGroup,
                       weight: &Matrix,
                       input: &[f32],
                       y: &mut Vec<f32>|
         -> Result<()> {
            let mut base = |y: &mut Vec<f32>| weight.matmul_into(input, n, y);
            match lora {
                Some(l) => l.project(layer, group, input, adapters, &mut base, y),
                None => {
                    base(y);
                    Ok(())
                }
            }
        };

        // Buffers reused by every layer (allocated once per call, not per projection).
        let (mut normed, mut fused, mut proj) = (Vec::new(), Vec::new(), Vec::new());
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let (mut gate, mut up) = (Vec::new(), Vec::new());
        let mut attn = vec![0f32; n * qd];
        let mut scores = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            rms_norm_into(&x, &layer.input_norm, c.rms_norm_eps, &mut normed);
            project(l, LoraGroup::Qkv, &layer.qkv, &normed, &mut fused)?;
            let width = qd + 2 * kvd;
            columns_into(&fused, width, 0, qd, &mut q);
            columns_into(&fused, width, qd, kvd, &mut k);
            columns_into(&fused, width, qd + kvd, kvd, &mut v);
            apply_rope(&mut q, &pos, hd, &self.inv_freq);
            apply_rope(&mut k, &pos, hd, &self.inv_freq);
            for (t, &r) in row_of.iter().enumerate() {
                let cache = &mut rows[r].cache.layers[l];
                cache.k.extend_from_slice(&k[t * kvd..(t + 1) * kvd]);
                cache.v.extend_from_slice(&v[t * kvd..(t + 1) * kvd]);
            }
            let caches: Vec<&super::kv_cache::LayerKv> =
                rows.iter().map(|r| &r.cache.layers[l]).collect();
            attention(
                &q,
                &caches,
                &row_of,
                &pos,
                (nh, nkv, hd),
                &mut attn,
                &mut scores,
            );
            project(l, LoraGroup::O, &layer.o, &attn, &mut proj)?;
            for (xi, oi) in x.iter_mut().zip(&proj) {
                *xi += oi;
            }

            // MLP block.
            rms_norm_into(&x, &layer.post_norm, c.rms_norm_eps, &mut normed);
            project(l, LoraGroup::GateUp, &layer.gate_up, &normed, &mut fused)?;
            columns_into(&fused, 2 * inter, 0, inter, &mut gate);
            columns_into(&fused, 2 * inter, inter, inter, &mut up);
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = silu(*g) * u;
            }
            project(l, LoraGroup::Down, &layer.down, &gate, &mut proj)?;
            for (xi, di) in x.iter_mut().zip(&proj) {
                *xi += di;
            }
        }
        for row in rows.iter_mut() {
            row.cache.advance(row.tokens.len());
        }

        // Logits for the last token of each row only.
        let mut last = Vec::with_capacity(rows.len() * h);
        let mut end = 0;
        for row in rows.iter() {
            end += row.tokens.len();
            last.extend_from_slice(&x[(end - 1) * h..end * h]);
        }
        rms_norm_into(&last, &self.final_norm, c.rms_norm_eps, &mut normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let mut data = Vec::new();
        head.matmul_into(&normed, rows.len(), &mut data);
        Ok(Logits {
            rows: rows.len(),
            vocab: c.vocab_size,
            data,
        })
    }
}

/// Causal attention of every token against its row's cache (which already holds this step's keys
/// and values): token `t` at position `p` sees positions `0..=p`. Writes `out`, `[n, heads * head_dim]`.
///
/// One task per (token, key/value head): the query heads sharing that key/value head (grouped-query
/// attention) are processed together, so each cached key and value row is loaded once per group and
/// the task writes one contiguous `group * head_dim` slice.
fn attention(
    q: &[f32],
    caches: &[&super::kv_cache::LayerKv],
    row_of: &[usize],
    pos: &[usize],
    (nh, nkv, hd): (usize, usize, usize),
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let kvd = nkv * hd;
    let group = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let work: usize = pos.iter().map(|p| (p + 1) * nh * hd).sum();
    let task = |scores: &mut Vec<f32>, (i, o): (usize, &mut [f32])| {
        let (t, kvh) = (i / nkv, i % nkv);
        let cache = caches[row_of[t]];
        let len = pos[t] + 1;
        // scores[g * len + j] for query head `kvh * group + g` and position `j`.
        scores.clear();
        scores.resize(group * len, 0.0);
        for j in 0..len {
            let kj = &cache.k[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
            for g in 0..group {
                let head = kvh * group + g;
                let qh = &q[t * nh * hd + head * hd..t * nh * hd + (head + 1) * hd];
                scores[g * len + j] = dot(qh, kj) * scale;
            }
        }
        for sg in scores.chunks_exact_mut(len) {
            let max = sg.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in sg.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            for s in sg.iter_mut() {
                *s *= inv;
            }
        }
        o.fill(0.0);
        for j in 0..len {
            let vj = &cache.v[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
            for (g, og) in o.chunks_exact_mut(hd).enumerate() {
                let p = scores[g * len + j];
                for (od, &vd) in og.iter_mut().zip(vj) {
                    *od += p * vd;
                }
            }
        }
    };
    // A decode step at batch 1 with a short context is a few tens of thousands of multiply-adds:
    // faster on this thread than woken rayon workers (which, on a busy machine, may wait for a
    // time slice); long contexts and prefills split across the threads.
    if work < (1 << 18) {
        out.chunks_mut(group * hd)
            .enumerate()
            .for_each(|a| task(scores, a));
    } else {
        out.par_chunks_mut(group * hd)
            .enumerate()
            .for_each_init(Vec::new, task);
    }
}

/// Weights of the right shapes for `config`, drawn from a fixed-seed generator (uniform, variance
/// `1/fan_in` for projections so activations keep their scale through the layers): for tests and
/// benchmarks that need a model of a given shape but not a trained one.
pub fn random_model_files(config: &LlamaConfig, seed: u64) -> ModelFiles {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    // splitmix64 -> uniform in [-1, 1).
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in expected_tensors(config) {
        if name == "lm_head.weight" && config.tie_word_embeddings {
            continue;
        }
        let numel: usize = shape.iter().product();
        let data: Vec<f32> = if shape.len() == 1 {
            (0..numel).map(|_| 1.0 + 0.1 * next()).collect()
        } else if name.contains("embed_tokens") || name == "lm_head.weight" {
            (0..numel).map(|_| 0.5 * next()).collect()
        } else {
            let a = (3.0 / shape[1] as f32).sqrt();
            (0..numel).map(|_| a * next()).collect()
        };
        tensors.insert(name, HostTensor { shape, data });
    }
    ModelFiles {
        config: config.clone(),
        tensors,
        tokenizer: None,
        source: format!("random weights (seed {seed})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_config() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            bos_token_id: Some(0),
            eos_token_ids: vec![1],
        }
    }

    #[test]
    fn matmul_matches_naive_for_both_dtypes_and_many_tokens() {
        let (rows, cols, n) = (37, 29, 70);
        let w = HostTensor {
            shape: vec![rows, cols],
            data: (0..rows * cols)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
                .collect(),
        };
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
            .collect();
        for dtype in [WeightDtype::F32, WeightDtype::Bf16] {
            // Values are multiples of 1/8 and 1/4 with few bits: exact in bf16 and in f32 sums.
            let m = Matrix::stack(&[&w], dtype);
            let mut y = vec![];
            m.matmul_into(&x, n, &mut y);
            for r in 0..rows {
                for t in 0..n {
                    let e: f32 = (0..cols)
                        .map(|c| w.data[r * cols + c] * x[t * cols + c])
                        .sum();
                    assert_eq!(y[t * rows + r], e, "{dtype:?} r={r} t={t}");
                }
            }
        }
    }

    /// The guarantee behind "batched == alone": a token's outputs are bit-identical whatever the
    /// batch size, its place in the batch (block of 1, 2 or 3 tokens) and the row block it falls in,
    /// for widths with and without a tail of `cols % 8` columns, serial and parallel alike.
    #[test]
    fn matmul_result_of_a_token_does_not_depend_on_the_batch() {
        let mut state = 0x1234_5678u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        for (rows, cols) in [(37, 29), (64, 576), (300, 1536), (7, 8)] {
            let w = HostTensor {
                shape: vec![rows, cols],
                data: (0..rows * cols).map(|_| next()).collect(),
            };
            let x: Vec<f32> = (0..17 * cols).map(|_| next()).collect();
            for dtype in [WeightDtype::F32, WeightDtype::Bf16] {
                let m = Matrix::stack(&[&w], dtype);
                let alone: Vec<Vec<f32>> = (0..17)
                    .map(|t| {
                        let mut y = vec![];
                        m.matmul_into(&x[t * cols..(t + 1) * cols], 1, &mut y);
                        y
                    })
                    .collect();
                for n in [2, 3, 4, 5, 8, 16, 17] {
                    let mut y = vec![];
                    m.matmul_into(&x[..n * cols], n, &mut y);
                    for (t, want) in alone.iter().enumerate().take(n) {
                        assert!(
                            y[t * rows..(t + 1) * rows] == want[..],
                            "{dtype:?} {rows}x{cols} n={n} t={t}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rope_rotates_half_pairs() {
        // head_dim 4: pairs (0, 2) and (1, 3); position 1 with inv_freq [1, 0.5].
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        apply_rope(&mut x, &[1], 4, &[1.0, 0.5]);
        let (c0, s0, c1, s1) = (1f32.cos(), 1f32.sin(), 0.5f32.cos(), 0.5f32.sin());
        let e = [
            1.0 * c0 - 3.0 * s0,
            2.0 * c1 - 4.0 * s1,
            3.0 * c0 + 1.0 * s0,
            4.0 * c1 + 2.0 * s1,
        ];
        for (a, b) in x.iter().zip(e) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_divides_low_frequencies() {
        let mut c = tiny_config();
        c.rope_theta = 500000.0;
        let plain = inv_freqs(&c);
        c.rope_scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let scaled = inv_freqs(&c);
        assert_eq!(scaled[0], plain[0]); // wavelength 2*pi < 16: unchanged
        assert!((scaled[7] - plain[7] / 8.0).abs() <= 1e-12); // longest wavelength: divided
        assert!(scaled
            .iter()
            .zip(&plain)
            .any(|(s, p)| s < p && *s > p / 8.0)); // smoothed band
    }
}
