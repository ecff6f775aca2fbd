//! What `ascend-cold inspect` reports about a model and a set of adapters.

use super::adapter::{Adapter, AdapterConfig, StackedAdapters};
use super::config::{LlamaConfig, RopeScaling};
use super::hf::expected_tensors;
use super::weights::ModelFiles;
use std::fmt;
use std::path::PathBuf;

/// One adapter as seen by [`inspect`].
#[derive(Debug)]
pub struct AdapterReport {
    /// The name given on the command line.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// `adapter_config.json`, or why it could not be read.
    pub config: Result<AdapterConfig, String>,
    /// Parameters (A and B) when the adapter fits the model, or why it does not.
    pub fits: Result<usize, String>,
}

/// Everything [`inspect`] found; `Display` prints it for people.
#[derive(Debug)]
pub struct InspectReport {
    /// Where the weights came from.
    pub source: String,
    /// The architecture.
    pub config: LlamaConfig,
    /// Parameters the model uses (the LM head counted once when tied).
    pub parameters: usize,
    /// Ids in the tokenizer, when there is one.
    pub tokenizer_vocab: Option<usize>,
    /// Whether a chat template came with the files.
    pub chat_template: bool,
    /// One entry per adapter, in the order given.
    pub adapters: Vec<AdapterReport>,
    /// Values in the stacked A/B tensors of the adapters that fit (ranks padded per module).
    pub stacked_adapter_values: usize,
}

impl InspectReport {
    /// Whether every adapter fits the model.
    pub fn all_adapters_fit(&self) -> bool {
        self.adapters.iter().all(|a| a.fits.is_ok())
    }
}

/// Inspect loaded model files and the adapters in `adapters` (name, folder).
pub fn inspect(files: &ModelFiles, adapters: &[(String, PathBuf)]) -> InspectReport {
    let config = &files.config;
    let parameters = expected_tensors(config)
        .iter()
        .filter(|(n, _)| !(n == "lm_head.weight" && config.tie_word_embeddings))
        .map(|(_, s)| s.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
        .fold(0usize, usize::saturating_add);
    let mut loaded = Vec::new();
    let reports = adapters
        .iter()
        .map(|(name, dir)| {
            let cfg = AdapterConfig::load(dir).map_err(|e| e.to_string());
            let fits = match Adapter::load(dir, config) {
                Ok(a) => {
                    let n = a.num_parameters();
                    loaded.push((name.clone(), a));
                    Ok(n)
                }
                Err(e) => Err(e.to_string()),
            };
            AdapterReport {
                name: name.clone(),
                dir: dir.clone(),
                config: cfg,
                fits,
            }
        })
        .collect();
    // Names are unique unless the user repeated one; count what stacks.
    let stacked_adapter_values =
        StackedAdapters::new(&loaded, config).map_or(0, |s| s.num_stacked_values());
    InspectReport {
        source: files.source.clone(),
        config: config.clone(),
        parameters,
        tokenizer_vocab: files
            .tokenizer
            .as_ref()
            .map(|t| t.tokenizer.get_vocab_size(true)),
        chat_template: files
            .tokenizer
            .as_ref()
            .is_some_and(|t| t.chat_template.is_some()),
        adapters: reports,
        stacked_adapter_values,
    }
}

/// `values * bytes_each` in MiB, computed in f64 (no overflow on absurd counts).
fn mib(values: usize, bytes_each: usize) -> String {
    let b = values as f64 * bytes_each as f64;
    match b {
        b if b < 1024.0 * 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b if b < 1024.0 * 1024.0 * 1024.0 => format!("{:.1} MiB", b / (1024.0 * 1024.0)),
        b => format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0)),
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "source:        {}", self.source)?;
        let attn = if c.num_key_value_heads == c.num_attention_heads {
            "MHA".to_string()
        } else {
            format!(
                "GQA, {} query heads per kv head",
                c.num_attention_heads / c.num_key_value_heads
            )
        };
        writeln!(
            f,
            "architecture:  Llama, {} layers, hidden {}, intermediate {} (SwiGLU), {} heads / {} kv heads ({attn}), head_dim {}",
            c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim
        )?;
        let scaling = match &c.rope_scaling {
            RopeScaling::None => "none".to_string(),
            RopeScaling::Linear { factor } => format!("linear x{factor}"),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => format!(
                "llama3 x{factor} (low {low_freq_factor}, high {high_freq_factor}, original {original_max_position_embeddings})"
            ),
        };
        writeln!(
            f,
            "               vocab {}, {} embeddings, RoPE theta {} scaling {scaling}, max positions {}, rms eps {:e}",
            c.vocab_size,
            if c.tie_word_embeddings { "tied" } else { "untied" },
            c.rope_theta,
            c.max_position_embeddings,
            c.rms_norm_eps
        )?;
        writeln!(
            f,
            "               bos {:?}, eos {:?}",
            c.bos_token_id, c.eos_token_ids
        )?;
        match self.tokenizer_vocab {
            Some(n) => writeln!(
                f,
                "tokenizer:     {n} ids{}",
                if self.chat_template {
                    ", chat template"
                } else {
                    ", no chat template"
                }
            )?,
            None => writeln!(f, "tokenizer:     none")?,
        }
        let p = self.parameters;
        writeln!(f, "parameters:    {p} ({:.1} M)", p as f64 / 1e6)?;
        writeln!(f, "resident:      f32 {}, bf16 {}", mib(p, 4), mib(p, 2))?;
        if self.adapters.is_empty() {
            return Ok(());
        }
        writeln!(f, "adapters:")?;
        for a in &self.adapters {
            write!(f, "  {} ({}): ", a.name, a.dir.display())?;
            match &a.config {
                Ok(cfg) => {
                    let targets: Vec<String> = cfg
                        .target_set(c.num_hidden_layers)
                        .iter()
                        .map(|t| t.to_string())
                        .collect();
                    writeln!(
                        f,
                        "rank {}, alpha {}, scaling {} ({}), modules [{}]",
                        cfg.r,
                        cfg.lora_alpha,
                        cfg.scaling(),
                        if cfg.use_rslora {
                            "rsLoRA: alpha/sqrt(r)"
                        } else {
                            "alpha/r"
                        },
                        targets.join(", ")
                    )?;
                }
                Err(e) => writeln!(f, "config unreadable: {e}")?,
            }
            match &a.fits {
                Ok(n) => writeln!(
                    f,
                    "    fits: yes, {n} parameters ({} in f16/bf16)",
                    mib(*n, 2)
                )?,
                Err(e) => writeln!(f, "    fits: NO: {e}")?,
            }
        }
        let k = self.adapters.iter().filter(|a| a.fits.is_ok()).count();
        if k > 0 {
            let stacked = self.stacked_adapter_values;
            writeln!(
                f,
                "memory with k = {k} adapter(s) that fit (bf16 weights, f16/bf16 adapters):"
            )?;
            writeln!(
                f,
                "  base + {k} stacked adapters (BGMV: one model serves all): {}",
                mib(p.saturating_add(stacked), 2)
            )?;
            writeln!(
                f,
                "  {k} merged copies of the model:                         {}",
                mib(p.saturating_mul(k), 2)
            )?;
            writeln!(
                f,
                "  {k} merged copies + the base (CoLD's amateur):           {}",
                mib(p.saturating_mul(k + 1), 2)
            )?;
        }
        Ok(())
    }
}
