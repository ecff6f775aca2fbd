//! Requests as JSON lines: the `--requests` file of `ascend-cold decode`, bytes from outside.
//!
//! One JSON object a line, every member optional (blank lines are skipped):
//!
//! ```text
//! {"prompt": "text" | "prompt_ids": [1, 2, 3], "adapter": "NAME", "strategy": "greedy" | "cold",
//!  "alpha": 0.1, "beta": 0.5, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0,
//!  "max_new_tokens": 128, "ignore_eos": false, "stop": ["\n\n"], "chat": false}
//! ```
//!
//! Exactly one of `prompt` and `prompt_ids`; what a line leaves out comes from [`RequestDefaults`].
//! [`read_request_lines`] parses a whole file (errors name the file, the line number and the field,
//! e.g. `line 3: prompt_ids[2]`); [`RequestLine::into_request`] resolves a line against the defaults,
//! a tokenizer and the adapter names, and checks it as [`super::Decoder::submit`] will, so a bad line
//! is reported by number before anything runs. Memory: a line longer than [`MAX_LINE_BYTES`] is refused
//! before it is read whole; otherwise parsing holds a line and its parsed fields, a small multiple of
//! its length (tests/fuzz_requests.rs).

use super::engine::{Request, Strategy};
use super::sampling::{Sampler, SamplingParams};
use super::stop::StopRules;
use crate::model::LlamaConfig;
use crate::{Error, Result};
use std::io::{BufRead, Read};
use std::path::Path;

/// The longest line [`read_request_lines`] reads (16 MiB: a prompt of millions of tokens, far past any
/// model's context).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A line's `strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyName {
    /// [`Strategy::Greedy`].
    Greedy,
    /// [`Strategy::Cold`] with the line's (or the defaults') `alpha` and `beta`.
    Cold,
}

/// One request line as written: every field optional.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLine {
    /// The prompt as text (tokenized by the caller, through the chat template when `chat`).
    pub prompt: Option<String>,
    /// The prompt as token ids.
    pub prompt_ids: Option<Vec<u32>>,
    /// The adapter's name; none = the defaults' (or the base model).
    pub adapter: Option<String>,
    /// Greedy or CoLD.
    pub strategy: Option<StrategyName>,
    /// CoLD's plausibility mask.
    pub alpha: Option<f32>,
    /// CoLD's penalty on the amateur.
    pub beta: Option<f32>,
    /// Sampling temperature (0 = the best token).
    pub temperature: Option<f32>,
    /// Sample among the k best only (0 = all).
    pub top_k: Option<usize>,
    /// Sample within the top-p mass.
    pub top_p: Option<f32>,
    /// The sampler's seed.
    pub seed: Option<u64>,
    /// Most new tokens, at least 1.
    pub max_new_tokens: Option<usize>,
    /// Keep generating through end-of-sequence tokens.
    pub ignore_eos: Option<bool>,
    /// Strings that end generation.
    pub stop: Option<Vec<String>>,
    /// Wrap `prompt` in the chat template.
    pub chat: Option<bool>,
}

/// Why a line was refused: the field at fault (`"line"` for the line as a whole) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The member, with an index into it when that is where the fault is (`prompt_ids[2]`).
    pub field: String,
    /// What was expected and what was found.
    pub detail: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

impl std::error::Error for LineError {}

/// What fills the fields a line leaves out (in `ascend-cold decode`, the command line's flags).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestDefaults {
    /// Adapter name; none = the base model.
    pub adapter: Option<String>,
    /// Greedy or CoLD.
    pub strategy: StrategyName,
    /// CoLD's alpha.
    pub alpha: f32,
    /// CoLD's beta.
    pub beta: f32,
    /// Temperature, top-k, top-p and seed.
    pub sampling: SamplingParams,
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// Keep generating through EOS.
    pub ignore_eos: bool,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Chat template for text prompts.
    pub chat: bool,
}

impl RequestLine {
    /// Parses one line (a JSON object; unknown members are refused, so a misspelt field is not
    /// silently ignored) and checks what needs no model: exactly one of `prompt` and `prompt_ids`,
    /// a non-empty `prompt_ids` (`max_new_tokens` 0 is a request for nothing, finished at once).
    ///
    /// # Errors
    /// A [`LineError`] naming the member at fault.
    pub fn parse(text: &str) -> std::result::Result<Self, LineError> {
        // serde would also read a struct from an array of its fields in order.
        let start = text.trim_start().chars().next();
        if start != Some('{') {
            return Err(LineError {
                field: "line".into(),
                detail: format!(
                    "a JSON object ({{...}}), found {}",
                    start.map_or("nothing".to_string(), |c| format!("{c:?} first"))
                ),
            });
        }
        let mut json = serde_json::Deserializer::from_str(text);
        let line: RequestLine = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            // The path to the fault; "." is the line itself, and a trailing "?" an unknown member
            // (which the detail names).
            let path = e.path().to_string();
            let field = path.trim_end_matches('?').trim_end_matches('.');
            LineError {
                field: if field.is_empty() { "line" } else { field }.to_string(),
                detail: e.into_inner().to_string(),
            }
        })?;
        json.end().map_err(|e| LineError {
            field: "line".into(),
            detail: format!("one JSON object, then the end of the line: {e}"),
        })?;
        line.check()?;
        Ok(line)
    }

    fn check(&self) -> std::result::Result<(), LineError> {
        let fault = |field: &str, detail: String| {
            Err(LineError {
                field: field.into(),
                detail,
            })
        };
        match (&self.prompt, &self.prompt_ids) {
            (Some(_), Some(_)) => {
                return fault(
                    "prompt",
                    "exactly one of prompt and prompt_ids, given both".into(),
                )
            }
            (None, None) => {
                return fault(
                    "prompt",
                    "exactly one of prompt and prompt_ids, given neither".into(),
                )
            }
            (None, Some(ids)) if ids.is_empty() => {
                return fault("prompt_ids", "at least one token id, given []".into())
            }
            _ => {}
        }
        Ok(())
    }

    /// The request this line asks for: its fields, else `defaults`'; a text prompt through `encode`
    /// (text, chat), the adapter name through `adapter_index` (`None` = the base model, -1), stop
    /// rules for `config`. The sampling and CoLD parameters are checked here as
    /// [`super::Decoder::submit`] checks them.
    ///
    /// # Errors
    /// What `encode` or `adapter_index` return; bad sampling or CoLD parameters.
    pub fn into_request(
        self,
        defaults: &RequestDefaults,
        config: &LlamaConfig,
        encode: impl FnOnce(&str, bool) -> Result<Vec<u32>>,
        adapter_index: impl FnOnce(Option<&str>) -> Result<i64>,
    ) -> Result<Request> {
        self.check()
            .map_err(|e| Error::parameter("request", "a valid request line", e))?;
        let prompt = match (self.prompt, self.prompt_ids) {
            (Some(text), None) => encode(&text, self.chat.unwrap_or(defaults.chat))?,
            (_, ids) => ids.unwrap_or_default(),
        };
        let strategy = match self.strategy.unwrap_or(defaults.strategy) {
            StrategyName::Greedy => Strategy::Greedy,
            StrategyName::Cold => {
                let (alpha, beta) = (
                    self.alpha.unwrap_or(defaults.alpha),
                    self.beta.unwrap_or(defaults.beta),
                );
                crate::contracts::ColdParams::new(alpha, beta)?;
                Strategy::Cold { alpha, beta }
            }
        };
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.sampling.temperature),
            top_k: self.top_k.unwrap_or(defaults.sampling.top_k),
            top_p: self.top_p.unwrap_or(defaults.sampling.top_p),
            seed: self.seed.unwrap_or(defaults.sampling.seed),
        };
        Sampler::new(sampling)?;
        let adapter = adapter_index(self.adapter.as_deref().or(defaults.adapter.as_deref()))?;
        Ok(Request {
            prompt,
            adapter,
            strategy,
            sampling,
            stop: StopRules {
                ignore_eos: self.ignore_eos.unwrap_or(defaults.ignore_eos),
                stop_strings: self.stop.unwrap_or_else(|| defaults.stop.clone()),
                ..StopRules::for_model(
                    config,
                    self.max_new_tokens.unwrap_or(defaults.max_new_tokens),
                )
            },
        })
    }
}

/// Every request line of `reader` with its 1-based line number, blank lines skipped; `path` names
/// the file in errors.
///
/// # Errors
/// [`Error::Io`] when reading fails; [`Error::InvalidFile`] naming `line N` (and the field) for a
/// line that is not UTF-8, longer than [`MAX_LINE_BYTES`], or refused by [`RequestLine::parse`].
pub fn read_request_lines(
    mut reader: impl BufRead,
    path: &Path,
) -> Result<Vec<(usize, RequestLine)>> {
    let invalid = |number: usize, field: &str, detail: String| Error::InvalidFile {
        path: path.to_path_buf(),
        field: format!("line {number}{}", if field.is_empty() { "" } else { ": " }) + field,
        detail,
    };
    let mut lines = vec![];
    let mut bytes = vec![];
    for number in 1.. {
        bytes.clear();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
        let read = Read::by_ref(&mut reader)
            .take(limit + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 {
            break;
        }
        if bytes.len() > MAX_LINE_BYTES {
            return Err(invalid(
                number,
                "",
                format!("a line of at most {MAX_LINE_BYTES} bytes, found a longer one"),
            ));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| invalid(number, "", format!("UTF-8 text: {e}")))?;
        if text.trim().is_empty() {
            continue;
        }
        let line = RequestLine::parse(text).map_err(|e| invalid(number, &e.field, e.detail))?;
        lines.push((number, line));
    }
    Ok(lines)
}
