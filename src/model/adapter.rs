//! PEFT LoRA adapters: loading one ([`Adapter`]) and stacking several for batched use
//! ([`StackedAdapters`]).
//!
//! Files (as PEFT's `save_pretrained` writes them): `adapter_config.json` (`r`, `lora_alpha`,
//! `use_rslora`, `target_modules` as a list of module names, a regex string matched against full
//! module names, or `"all-linear"`; `fan_in_fan_out` must be false) and `adapter_model.safetensors`
//! with `base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight` `[r, in]` and
//! `...lora_B.weight` `[out, r]`. The delta of a targeted projection is `scaling * B @ A @ x`, with
//! `scaling = lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA.
//!
//! # Stacked layout, and why ranks are padded
//!
//! [`StackedAdapters`] holds, per (layer, target), `A` as `[L, R, in]` and `B` as `[L, out, R]`
//! (row-major f32, `L` adapters, `R` the largest rank among the adapters targeting that module),
//! smaller ranks zero-padded, scaling folded into `B`, and all-zero blocks for adapters that do not
//! target the module. This is the layout `bgmv_shrink` / `bgmv_expand` take, so any mix of adapters in
//! a batch costs one shrink and one expand launch per module. The price is that a row of a rank-`r_i`
//! adapter does `R / r_i` times the minimal shrink/expand work (the padding is multiplied by zero);
//! LoRA work is a few percent of a projection (`r (in + out)` against `in * out` multiply-adds), so
//! for the ranks seen in practice (4..64) this costs less than a second launch per rank group would.
//! `R` is taken per module, not globally, so an MLP-only rank-2 adapter does not pad the attention
//! modules of a rank-64 one and vice versa. Modules no adapter targets have no stacked tensors at all
//! (nothing to launch).

use super::config::LlamaConfig;
use super::hf::{invalid, read_json, SafetensorsFile};
use super::targets::LoraTarget;
use super::weights::HostTensor;
use crate::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest LoRA rank accepted from `adapter_config.json` (real adapters use 4..256).
pub const MAX_RANK: usize = 1 << 16;

/// Longest `target_modules` regular expression accepted, in bytes: PEFT writes a few alternations
/// (tens to hundreds of bytes), and parsing costs up to about two hundred bytes of memory per byte of
/// pattern, in one allocation, before any size limit applies (a fuzzed 19,543-byte pattern took
/// 3.5 MiB at once, `tests/fuzz_adapter.rs`).
pub const MAX_REGEX_LEN: usize = 4 << 10;

/// Largest compiled `target_modules` regular expression, in bytes (`regex::RegexBuilder::size_limit`).
pub const MAX_REGEX_SIZE: usize = 1 << 20;

/// Which modules an adapter targets, as `adapter_config.json` says.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetModules {
    /// Module names; a module matches when its full name equals an entry or ends with `.` + entry.
    List(Vec<String>),
    /// A regular expression that must match the full module name (`model.layers.0.self_attn.q_proj`).
    Regex(String),
    /// `"all-linear"`: every linear projection except the LM head.
    AllLinear,
}

/// The parsed `adapter_config.json`.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// LoRA rank.
    pub r: usize,
    /// `lora_alpha`.
    pub lora_alpha: f32,
    /// rsLoRA: scaling `lora_alpha / sqrt(r)` instead of `lora_alpha / r`.
    pub use_rslora: bool,
    /// `target_modules`.
    pub target_modules: TargetModules,
    /// `layers_to_transform`, when set: only these layers carry weights.
    pub layers_to_transform: Option<Vec<usize>>,
    regex: Option<regex::Regex>,
}

impl AdapterConfig {
    /// Parse `dir/adapter_config.json`, rejecting features this implementation does not support
    /// (DoRA, per-module rank or alpha patterns, biases, `fan_in_fan_out`, extra trained modules).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("adapter_config.json");
        let json = read_json(&path)?;
        if !json.is_object() {
            return Err(invalid(&path, "json", "expected an object"));
        }
        if let Some(t) = json.get("peft_type").filter(|v| !v.is_null()) {
            if t.as_str() != Some("LORA") {
                return Err(invalid(
                    &path,
                    "peft_type",
                    format!("expected \"LORA\", got {t}"),
                ));
            }
        }
        let r = json
            .get("r")
            .and_then(Value::as_u64)
            .filter(|&r| r >= 1 && r <= MAX_RANK as u64)
            .ok_or_else(|| {
                invalid(
                    &path,
                    "r",
                    format!(
                        "expected an integer in 1..={MAX_RANK}, got {:?}",
                        json.get("r")
                    ),
                )
            })? as usize;
        let lora_alpha = json
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .map(|a| a as f32)
            .filter(|a| a.is_finite())
            .ok_or_else(|| {
                invalid(
                    &path,
                    "lora_alpha",
                    format!(
                        "expected a finite number within f32 range, got {:?}",
                        json.get("lora_alpha")
                    ),
                )
            })?;
        let flag = |field: &str| -> Result<bool> {
            match json.get(field) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(v) => Err(invalid(
                    &path,
                    field,
                    format!("expected a boolean, got {v}"),
                )),
            }
        };
        let use_rslora = flag("use_rslora")?;
        for field in ["fan_in_fan_out", "use_dora", "lora_bias"] {
            if flag(field)? {
                return Err(invalid(
                    &path,
                    field,
                    "true is not supported (expected false)",
                ));
            }
        }
        for field in ["rank_pattern", "alpha_pattern"] {
            if json
                .get(field)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                return Err(invalid(
                    &path,
                    field,
                    "per-module ranks or alphas are not supported (expected {})",
                ));
            }
        }
        if let Some(b) = json.get("bias").filter(|v| !v.is_null()) {
            if b.as_str() != Some("none") {
                return Err(invalid(
                    &path,
                    "bias",
                    format!("expected \"none\", got {b}"),
                ));
            }
        }
        if json
            .get("modules_to_save")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty())
        {
            return Err(invalid(
                &path,
                "modules_to_save",
                "fully trained extra modules are not supported",
            ));
        }
        let (target_modules, regex) = match json.get("target_modules") {
            Some(Value::String(s)) if s == "all-linear" => (TargetModules::AllLinear, None),
            Some(Value::String(s)) if s.len() > MAX_REGEX_LEN => {
                return Err(invalid(
                    &path,
                    "target_modules",
                    format!(
                        "regular expression of {} bytes (at most {MAX_REGEX_LEN})",
                        s.len()
                    ),
                ))
            }
            Some(Value::String(s)) => {
                // PEFT patterns are a few alternations; without a tighter limit than the crate's
                // 10 MiB, a 16-byte pattern such as `(?:\w{100}){100}` compiles to megabytes.
                let re = regex::RegexBuilder::new(&format!("^(?:{s})$"))
                    .size_limit(MAX_REGEX_SIZE)
                    .build()
                    .map_err(|e| {
                        invalid(
                            &path,
                            "target_modules",
                            format!("bad regular expression: {e}"),
                        )
                    })?;
                (TargetModules::Regex(s.clone()), Some(re))
            }
            Some(Value::Array(list)) => {
                let names = list
                    .iter()
                    .map(|v| v.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        invalid(&path, "target_modules", "expected a list of strings")
                    })?;
                for n in &names {
                    let known = LoraTarget::ALL.iter().any(|t| {
                        t.module_path() == n
                            || t.module_path().ends_with(&format!(".{n}"))
                            || module_name(0, *t).ends_with(&format!(".{n}"))
                    });
                    if !known {
                        return Err(invalid(
                            &path,
                            "target_modules",
                            format!("{n:?} is not a Llama layer projection (supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"),
                        ));
                    }
                }
                (TargetModules::List(names), None)
            }
            v => {
                return Err(invalid(
                    &path,
                    "target_modules",
                    format!("expected a list or a string, got {v:?}"),
                ))
            }
        };
        let layers_to_transform = match json.get("layers_to_transform") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_u64().map(|n| n as usize))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        invalid(
                            &path,
                            "layers_to_transform",
                            "expected a list of layer numbers",
                        )
                    })?,
            ),
            Some(v) => Some(vec![v.as_u64().ok_or_else(|| {
                invalid(
                    &path,
                    "layers_to_transform",
                    format!("expected a layer number, got {v}"),
                )
            })? as usize]),
        };
        Ok(AdapterConfig {
            path,
            r,
            lora_alpha,
            use_rslora,
            target_modules,
            layers_to_transform,
            regex,
        })
    }

    /// The factor that multiplies `B @ A @ x`.
    pub fn scaling(&self) -> f32 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f32).sqrt()
        } else {
            self.lora_alpha / self.r as f32
        }
    }

    /// Whether this adapter has weights for `target` in `layer` (PEFT's matching rules).
    pub fn targets(&self, layer: usize, target: LoraTarget) -> bool {
        if let Some(layers) = &self.layers_to_transform {
            if !layers.contains(&layer) {
                return false;
            }
        }
        let name = module_name(layer, target);
        match &self.target_modules {
            TargetModules::AllLinear => true,
            TargetModules::Regex(_) => self.regex.as_ref().is_some_and(|re| re.is_match(&name)),
            TargetModules::List(list) => list
                .iter()
                .any(|m| name == *m || name.ends_with(&format!(".{m}"))),
        }
    }

    /// The targets this adapter touches in any of `num_layers` layers, in [`LoraTarget::ALL`] order.
    pub fn target_set(&self, num_layers: usize) -> Vec<LoraTarget> {
        LoraTarget::ALL
            .into_iter()
            .filter(|&t| (0..num_layers).any(|l| self.targets(l, t)))
            .collect()
    }
}

/// Full module name of a projection inside `LlamaForCausalLM` (what PEFT matches against).
fn module_name(layer: usize, target: LoraTarget) -> String {
    format!("model.layers.{layer}.{}", target.module_path())
}

/// The `A` `[r, in]` and `B` `[out, r]` of one projection.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Down-projection `[r, in]`.
    pub a: HostTensor,
    /// Up-projection `[out, r]` (scaling not applied).
    pub b: HostTensor,
}

/// One PEFT adapter, checked against a model's configuration.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `adapter_config.json`.
    pub config: AdapterConfig,
    /// The weights file.
    pub weights_path: PathBuf,
    /// Weights by (layer, target); exactly the modules [`AdapterConfig::targets`] selects.
    pub modules: BTreeMap<(usize, LoraTarget), LoraPair>,
}

/// Parse `base_model.model.model.layers.{i}.{module}.lora_{A|B}.weight`.
fn parse_key(key: &str) -> Option<(usize, LoraTarget, bool)> {
    let rest = key.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || layer.len() > 9 {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    for t in LoraTarget::ALL {
        if let Some(ab) = rest.strip_prefix(t.module_path()) {
            return match ab {
                ".lora_A.weight" => Some((layer, t, true)),
                ".lora_B.weight" => Some((layer, t, false)),
                _ => None,
            };
        }
    }
    None
}

impl Adapter {
    /// Load the adapter in `dir` for a model of `model`.
    ///
    /// Errors ([`Error::InvalidFile`] naming the file and tensor or field): an unsupported config, a
    /// tensor that is not a LoRA weight of a projection of layers `0..num_hidden_layers`, a tensor of
    /// a module `target_modules` does not select, a missing `lora_A`/`lora_B` for a selected module,
    /// a shape other than `[r, in]` / `[out, r]` (expected and given shapes in the message), a dtype
    /// other than F32/F16/BF16.
    pub fn load(dir: &Path, model: &LlamaConfig) -> Result<Self> {
        let config = AdapterConfig::load(dir)?;
        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.is_file() {
            let detail = if dir.join("adapter_model.bin").is_file() {
                "missing; only safetensors adapters are read (adapter_model.bin is a pickle)"
            } else {
                "missing"
            };
            return Err(invalid(&weights_path, "file", detail));
        }
        let file = SafetensorsFile::open(&weights_path)?;
        let r = config.r;
        let mut found: BTreeMap<(usize, LoraTarget), (bool, bool)> = BTreeMap::new();
        for name in file.names() {
            let Some((layer, target, is_a)) = parse_key(&name) else {
                return Err(invalid(
                    &weights_path,
                    &name,
                    "not a LoRA weight of a Llama projection (expected base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_{A|B}.weight)",
                ));
            };
            if layer >= model.num_hidden_layers {
                return Err(invalid(
                    &weights_path,
                    &name,
                    format!(
                        "layer {layer}, but the model has {} layers",
                        model.num_hidden_layers
                    ),
                ));
            }
            if !config.targets(layer, target) {
                return Err(invalid(
                    &weights_path,
                    &name,
                    format!(
                        "module not selected by target_modules {:?} in {}",
                        config.target_modules,
                        config.path.display()
                    ),
                ));
            }
            let (inf, outf) = target.dims(model);
            let expected = if is_a { [r, inf] } else { [outf, r] };
            let (_, shape) = file.info(&name).expect("listed by names()");
            if shape != expected {
                return Err(invalid(
                    &weights_path,
                    &name,
                    format!(
                        "shape {shape:?}, expected {expected:?} ({} of rank {r} for {target} {inf} -> {outf})",
                        if is_a { "lora_A [r, in]" } else { "lora_B [out, r]" }
                    ),
                ));
            }
            let e = found.entry((layer, target)).or_default();
            if is_a {
                e.0 = true
            } else {
                e.1 = true
            }
        }
        let mut modules = BTreeMap::new();
        for layer in 0..model.num_hidden_layers {
            for target in LoraTarget::ALL {
                if !config.targets(layer, target) {
                    continue;
                }
                let key = |ab: &str| {
                    format!(
                        "base_model.model.model.layers.{layer}.{}.lora_{ab}.weight",
                        target.module_path()
                    )
                };
                let (has_a, has_b) = found.get(&(layer, target)).copied().unwrap_or_default();
                for (has, ab) in [(has_a, "A"), (has_b, "B")] {
                    if !has {
                        return Err(invalid(
                            &weights_path,
                            key(ab),
                            "tensor missing (its module is selected by target_modules)",
                        ));
                    }
                }
                let (inf, outf) = target.dims(model);
                let a = file.tensor_f32(&key("A"), &[r, inf])?;
                let b = file.tensor_f32(&key("B"), &[outf, r])?;
                modules.insert((layer, target), LoraPair { a, b });
            }
        }
        if modules.is_empty() {
            return Err(invalid(
                &config.path,
                "target_modules",
                "selects no projection of this model",
            ));
        }
        Ok(Adapter {
            config,
            weights_path,
            modules,
        })
    }

    /// Parameters in all `A` and `B` matrices.
    pub fn num_parameters(&self) -> usize {
        self.modules
            .values()
            .map(|p| p.a.data.len() + p.b.data.len())
            .sum()
    }
}

/// The stacked tensors of one (layer, target) module. See the [module docs](self) for the layout.
#[derive(Debug, Clone, Copy)]
pub struct StackedModule<'a> {
    /// Layer.
    pub layer: usize,
    /// Projection.
    pub target: LoraTarget,
    /// `R`: the padded rank (largest rank among adapters targeting this module).
    pub rank: usize,
    /// Input width of the projection.
    pub in_features: usize,
    /// Output width of the projection.
    pub out_features: usize,
    /// Per adapter: its rank here, 0 when it does not target this module (its blocks are zero).
    pub ranks: &'a [usize],
    /// `[num_adapters, rank, in_features]`.
    pub a: &'a [f32],
    /// `[num_adapters, out_features, rank]`, scaling folded in.
    pub b: &'a [f32],
}

#[derive(Debug, Clone)]
struct StackedData {
    rank: usize,
    ranks: Vec<usize>,
    a: Vec<f32>,
    b: Vec<f32>,
}

/// Several adapters at once, stacked per module for BGMV (index `i` = the `i`-th adapter given).
#[derive(Debug, Clone)]
pub struct StackedAdapters {
    config: LlamaConfig,
    names: Vec<String>,
    scalings: Vec<f32>,
    /// Index `layer * 7 + target.index()`.
    modules: Vec<Option<StackedData>>,
}

impl StackedAdapters {
    /// Stack `adapters` for a model of `config`.
    ///
    /// Errors: a duplicate name ([`Error::BadParameter`]), or an adapter whose weights do not fit
    /// `config` ([`Error::BadShape`] naming the adapter, module, expected and given shapes).
    pub fn new(adapters: &[(String, Adapter)], config: &LlamaConfig) -> Result<Self> {
        for (i, (name, _)) in adapters.iter().enumerate() {
            if adapters[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::parameter(
                    "adapter name",
                    "unique names",
                    format!("{name:?} twice"),
                ));
            }
        }
        for (name, adapter) in adapters {
            let r = adapter.config.r;
            for (&(layer, target), pair) in &adapter.modules {
                let (inf, outf) = target.dims(config);
                if layer >= config.num_hidden_layers {
                    return Err(Error::parameter(
                        "adapter layer",
                        format!(
                            "0..{} (adapter {name:?}, {target})",
                            config.num_hidden_layers
                        ),
                        layer,
                    ));
                }
                for (what, t, expected) in [
                    ("lora_A", &pair.a, [r, inf]),
                    ("lora_B", &pair.b, [outf, r]),
                ] {
                    if t.shape != expected || t.data.len() != expected[0] * expected[1] {
                        return Err(Error::shape(
                            format!("adapter {name:?} layer {layer} {target} {what}"),
                            format!("{expected:?}"),
                            format!("{:?} ({} values)", t.shape, t.data.len()),
                        ));
                    }
                }
            }
        }
        let n = adapters.len();
        let mut modules = Vec::with_capacity(config.num_hidden_layers * LoraTarget::ALL.len());
        for layer in 0..config.num_hidden_layers {
            for target in LoraTarget::ALL {
                let ranks: Vec<usize> = adapters
                    .iter()
                    .map(|(_, a)| {
                        if a.modules.contains_key(&(layer, target)) {
                            a.config.r
                        } else {
                            0
                        }
                    })
                    .collect();
                let rank = ranks.iter().copied().max().unwrap_or(0);
                if rank == 0 {
                    modules.push(None);
                    continue;
                }
                let (inf, outf) = target.dims(config);
                let mut a = vec![0f32; n * rank * inf];
                let mut b = vec![0f32; n * outf * rank];
                for (i, (_, adapter)) in adapters.iter().enumerate() {
                    let Some(pair) = adapter.modules.get(&(layer, target)) else {
                        continue;
                    };
                    let r = adapter.config.r;
                    let s = adapter.config.scaling();
                    // A: rows 0..r of the [rank, in] block; rows r..rank stay zero.
                    a[i * rank * inf..i * rank * inf + r * inf].copy_from_slice(&pair.a.data);
                    // B: columns 0..r of each [rank]-wide row; columns r..rank stay zero.
                    let bi = &mut b[i * outf * rank..(i + 1) * outf * rank];
                    for o in 0..outf {
                        for k in 0..r {
                            bi[o * rank + k] = s * pair.b.data[o * r + k];
                        }
                    }
                }
                modules.push(Some(StackedData { rank, ranks, a, b }));
            }
        }
        Ok(StackedAdapters {
            config: config.clone(),
            names: adapters.iter().map(|(n, _)| n.clone()).collect(),
            scalings: adapters.iter().map(|(_, a)| a.config.scaling()).collect(),
            modules,
        })
    }

    /// Number of adapters.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adapter names, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of the adapter called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Scaling of each adapter (already folded into the stacked `B`).
    pub fn scalings(&self) -> &[f32] {
        &self.scalings
    }

    /// The model configuration the adapters were stacked for.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The stacked tensors of one module, or `None` when no adapter targets it (or `layer` is out of
    /// range).
    pub fn module(&self, layer: usize, target: LoraTarget) -> Option<StackedModule<'_>> {
        if layer >= self.config.num_hidden_layers {
            return None;
        }
        let d = self.modules[layer * LoraTarget::ALL.len() + target.index()].as_ref()?;
        let (in_features, out_features) = target.dims(&self.config);
        Some(StackedModule {
            layer,
            target,
            rank: d.rank,
            in_features,
            out_features,
            ranks: &d.ranks,
            a: &d.a,
            b: &d.b,
        })
    }

    /// Values held in all stacked `A` and `B` tensors (padding included): the device memory is this
    /// times the element size of the dtype it uploads.
    pub fn num_stacked_values(&self) -> usize {
        self.modules
            .iter()
            .flatten()
            .map(|d| d.a.len() + d.b.len())
            .sum()
    }
}
