//! `ascend-cold decode`: greedy, CoLD or sampled generation from a model and PEFT adapters, one prompt
//! or a JSONL file of requests run together, within admission limits (docs/DECODING.md), each
//! request's result written as soon as it finishes.

use crate::inspect::parse_named_dir;
use crate::interrupt;
use ascend_cold::decode::{
    encode_prompt, read_request_lines, AdmissionLimits, Decoder, Output, RequestDefaults,
    RequestId, RequestLine, SamplingParams, StrategyName,
};
use ascend_cold::model::{
    load_model, Adapter, DeviceLora, LlamaModel, LoraDelta, ModelFiles, StackedAdapters,
    WeightDtype,
};
use ascend_cold::{Error, Result, Stream};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How next tokens are chosen.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    /// Highest logit of the model (with the adapter).
    Greedy,
    /// Contrastive LoRA decoding: the adapted expert against the bare base model.
    Cold,
}

/// Element type of the LoRA path on the device.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraDtype {
    /// bfloat16 (vLLM's usual choice; no overflow).
    Bf16,
    /// float16 (3 more mantissa bits).
    F16,
}

/// Resident weight type of the host model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsArg {
    /// Half the memory traffic (the fast default).
    Bf16,
    /// Exact weights (for parity checks).
    F32,
}

/// Arguments of `decode`.
#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// A Hugging Face model folder or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// An adapter as NAME=DIR (a PEFT folder); repeatable.
    #[arg(long = "adapter", value_parser = parse_named_dir)]
    pub adapters: Vec<(String, PathBuf)>,
    /// The prompt text.
    #[arg(long, conflicts_with_all = ["prompt_ids", "requests"])]
    pub prompt: Option<String>,
    /// The prompt as token ids, e.g. 1,2,3.
    #[arg(long, value_delimiter = ',', conflicts_with = "requests")]
    pub prompt_ids: Option<Vec<u32>>,
    /// A JSONL file, one request per line: {"prompt" | "prompt_ids", "adapter", "strategy", "alpha",
    /// "beta", "temperature", "top_k", "top_p", "seed", "max_new_tokens", "ignore_eos", "stop", "chat"};
    /// missing fields take the command line's values. Requests beyond --max-batch-rows and
    /// --max-kv-mib wait and start, in file order, as others finish.
    #[arg(long)]
    pub requests: Option<PathBuf>,
    /// Most batch rows per step (a CoLD request is 2 rows: expert and amateur).
    #[arg(long, default_value_t = AdmissionLimits::DEFAULT_MAX_ROWS)]
    pub max_batch_rows: usize,
    /// Most KV-cache memory of the running requests, in MiB, each counted at prompt + max-new-tokens
    /// positions. Default: a quarter of the memory this process may use (MemAvailable, no more than
    /// the `ulimit -v` address-space limit), as measured now.
    #[arg(long, default_value_t = default_max_kv_mib())]
    pub max_kv_mib: usize,
    /// The adapter of the request (a NAME given with --adapter); none = the base model.
    #[arg(long)]
    pub adapter_name: Option<String>,
    /// Greedy or CoLD (which needs --adapter-name: the adapter is its expert, the base model its
    /// amateur).
    #[arg(long, value_enum, default_value_t = StrategyArg::Greedy)]
    pub strategy: StrategyArg,
    /// CoLD's plausibility mask on the expert, in (0, 1].
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f32,
    /// CoLD's penalty on the base model, >= 0.
    #[arg(long, default_value_t = 0.5)]
    pub beta: f32,
    /// Sampling temperature (0 = greedy choice).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample among the k best tokens only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample within the top-p probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most new tokens per request, at least 1.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Keep generating through end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// A string that ends generation; repeatable.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    /// Print one JSON object per request, each as soon as that request finishes (so in order of
    /// completion; "index" is the request's position, "line" its line in --requests).
    #[arg(long)]
    pub json: bool,
    /// auto, emu[:N] or npu[:N].
    #[arg(long, default_value = "auto")]
    pub device: ascend_cold::DeviceSpec,
    /// Element type of the LoRA path on the device.
    #[arg(long, value_enum, default_value_t = LoraDtype::Bf16)]
    pub lora_dtype: LoraDtype,
    /// Resident weights of the host model.
    #[arg(long, value_enum, default_value_t = WeightsArg::Bf16)]
    pub weights: WeightsArg,
}

/// A loaded model with its adapters on a device: what `decode` and `eval` run on.
pub struct Session {
    pub files: ModelFiles,
    pub model: LlamaModel,
    pub adapter_names: Vec<String>,
    pub lora: Option<Box<dyn LoraDelta>>,
    pub stream: Stream,
}

impl Session {
    /// Loads the model and adapters, and uploads the adapters to the device.
    pub fn open(
        model: &Path,
        adapters: &[(String, PathBuf)],
        device: ascend_cold::DeviceSpec,
        weights: WeightsArg,
        lora_dtype: LoraDtype,
    ) -> Result<Self> {
        let (device, why) = device.open()?;
        eprintln!("device: {why}");
        let t = Instant::now();
        let files = load_model(model)?;
        let dtype = match weights {
            WeightsArg::Bf16 => WeightDtype::Bf16,
            WeightsArg::F32 => WeightDtype::F32,
        };
        let llama = LlamaModel::new(&files, dtype)?;
        let stream = Stream::new(&device)?;
        let loaded = adapters
            .iter()
            .map(|(name, dir)| Ok((name.clone(), Adapter::load(dir, &files.config)?)))
            .collect::<Result<Vec<_>>>()?;
        let lora: Option<Box<dyn LoraDelta>> = if loaded.is_empty() {
            None
        } else {
            let stacked = StackedAdapters::new(&loaded, &files.config)?;
            Some(match lora_dtype {
                LoraDtype::Bf16 => Box::new(DeviceLora::<half::bf16>::new(&stacked, &stream)?),
                LoraDtype::F16 => Box::new(DeviceLora::<half::f16>::new(&stacked, &stream)?),
            })
        };
        eprintln!(
            "loaded {} ({} adapters) in {:.2} s",
            model.display(),
            loaded.len(),
            t.elapsed().as_secs_f64()
        );
        Ok(Session {
            files,
            model: llama,
            adapter_names: loaded.into_iter().map(|(n, _)| n).collect(),
            lora,
            stream,
        })
    }

    /// A decoder over the session's model, adapters and tokenizer.
    pub fn decoder(&self) -> Decoder<'_> {
        let d = Decoder::new(&self.model, self.lora.as_deref(), self.stream.clone());
        match &self.files.tokenizer {
            Some(t) => d.with_tokenizer(&t.tokenizer),
            None => d,
        }
    }

    /// The adapter index of a name (None = base model).
    pub fn adapter_index(&self, name: Option<&str>) -> Result<i64> {
        match name {
            None => Ok(-1),
            Some(n) => self
                .adapter_names
                .iter()
                .position(|a| a == n)
                .map(|i| i as i64)
                .ok_or_else(|| {
                    Error::parameter(
                        "adapter",
                        format!(
                            "one of {:?} (given with --adapter NAME=DIR)",
                            self.adapter_names
                        ),
                        n,
                    )
                }),
        }
    }

    /// Token ids of a prompt: through the chat template as a user message when `chat`.
    pub fn encode(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        let tokenizer = self.files.tokenizer.as_ref().ok_or_else(|| {
            Error::parameter(
                "prompt",
                "a model with a tokenizer (or use --prompt-ids)",
                "text",
            )
        })?;
        encode_prompt(tokenizer, &self.files.config, prompt, chat)
    }
}

/// Memory this process may use, in bytes: `MemAvailable` (twice the per-trial host budget, which is
/// half of it), no more than the address-space limit (`ulimit -v`) when one is set.
fn usable_memory() -> usize {
    let available = ascend_cold::harness::host_memory_budget().saturating_mul(2);
    address_space_limit().map_or(available, |limit| available.min(limit))
}

/// The soft `RLIMIT_AS` in bytes, from `/proc/self/limits` ("Max address space  SOFT  HARD  bytes");
/// `None` when unlimited or unreadable.
fn address_space_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max address space"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `--max-kv-mib`'s default: [`AdmissionLimits::for_memory`] of [`usable_memory`], in MiB.
fn default_max_kv_mib() -> usize {
    AdmissionLimits::for_memory(usable_memory()).max_kv_bytes >> 20
}

impl DecodeArgs {
    /// The values of the fields a request line leaves out.
    fn request_defaults(&self) -> RequestDefaults {
        RequestDefaults {
            adapter: self.adapter_name.clone(),
            strategy: match self.strategy {
                StrategyArg::Greedy => StrategyName::Greedy,
                StrategyArg::Cold => StrategyName::Cold,
            },
            alpha: self.alpha,
            beta: self.beta,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            },
            max_new_tokens: self.max_new_tokens,
            ignore_eos: self.ignore_eos,
            stop: self.stop.clone(),
            chat: self.chat,
        }
    }

    /// `--max-batch-rows` and `--max-kv-mib` as limits.
    fn limits(&self) -> Result<AdmissionLimits> {
        let max_kv_bytes = self.max_kv_mib.checked_mul(1 << 20).ok_or_else(|| {
            Error::parameter(
                "--max-kv-mib",
                format!("at most {} MiB", usize::MAX >> 20),
                self.max_kv_mib,
            )
        })?;
        if self.max_batch_rows == 0 {
            return Err(Error::parameter(
                "--max-batch-rows",
                "at least 1 (a CoLD request needs 2)",
                0,
            ));
        }
        Ok(AdmissionLimits {
            max_rows: self.max_batch_rows,
            max_kv_bytes,
        })
    }
}

/// The `--json` object of one request.
fn output_json(out: &Output, origin: Origin) -> serde_json::Value {
    serde_json::json!({
        "index": origin.index,
        "line": origin.line,
        "tokens": out.tokens,
        "text": out.text,
        "prompt_tokens": out.prompt_tokens,
        "finish": out.finish.map(|f| f.as_str()),
        "timings": {
            "prefill_ms": out.timings.prefill.as_secs_f64() * 1e3,
            "decode_ms": out.timings.decode.as_secs_f64() * 1e3,
            "decode_tokens_per_s": out.timings.decode_tokens_per_s(out.tokens.len()),
        },
    })
}

/// Where a request came from: its position among the requests, and its line in --requests.
#[derive(Clone, Copy)]
struct Origin {
    index: usize,
    line: Option<usize>,
}

/// Runs the command; exit code 0, or [`interrupt::EXIT_CODE`] after Ctrl-C (finished requests
/// written, the rest dropped).
pub fn run(args: &DecodeArgs) -> Result<u8> {
    let limits = args.limits()?;
    // The requests file is read before the model loads, so a bad line costs no load.
    let lines: Vec<(Option<usize>, RequestLine)> =
        match (&args.requests, &args.prompt, &args.prompt_ids) {
            (Some(path), _, _) => {
                let file = std::fs::File::open(path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                read_request_lines(std::io::BufReader::new(file), path)?
                    .into_iter()
                    .map(|(number, line)| (Some(number), line))
                    .collect()
            }
            (None, Some(p), _) => vec![(
                None,
                RequestLine {
                    prompt: Some(p.clone()),
                    ..Default::default()
                },
            )],
            (None, None, Some(ids)) => vec![(
                None,
                RequestLine {
                    prompt_ids: Some(ids.clone()),
                    ..Default::default()
                },
            )],
            (None, None, None) => {
                return Err(Error::parameter(
                    "prompt",
                    "--prompt, --prompt-ids or --requests",
                    "none",
                ))
            }
        };
    let session = Session::open(
        &args.model,
        &args.adapters,
        args.device,
        args.weights,
        args.lora_dtype,
    )?;
    let defaults = args.request_defaults();
    let mut decoder = session.decoder().with_limits(limits)?;
    let mut origins: HashMap<RequestId, Origin> = HashMap::with_capacity(lines.len());
    for (index, (line_number, line)) in lines.into_iter().enumerate() {
        let submitted = line
            .into_request(
                &defaults,
                &session.files.config,
                |text, chat| session.encode(text, chat),
                |name| session.adapter_index(name),
            )
            .and_then(|request| decoder.submit(request));
        let id = match (submitted, &args.requests, line_number) {
            (Ok(id), _, _) => id,
            (Err(e), Some(path), Some(number)) => {
                return Err(Error::InvalidFile {
                    path: path.clone(),
                    field: format!("line {number}"),
                    detail: e.to_string(),
                })
            }
            (Err(e), _, _) => return Err(e),
        };
        origins.insert(
            id,
            Origin {
                index,
                line: line_number,
            },
        );
    }
    let total = origins.len();
    let limits = decoder.limits();
    let stream_text = !args.json && total == 1;
    let mut stdout = std::io::stdout().lock();
    let written = |e: std::io::Error| Error::Io {
        path: "<stdout>".into(),
        source: e,
    };
    let mut write_output = |out: &Output, origin: Origin| -> Result<()> {
        if args.json {
            writeln!(stdout, "{}", output_json(out, origin)).map_err(written)?;
        } else if !stream_text {
            writeln!(
                stdout,
                "--- request {} ({:?}, {} tokens)\n{}",
                origin.index,
                out.finish.map(|f| f.as_str()),
                out.tokens.len(),
                out.text
            )
            .map_err(written)?;
        }
        stdout.flush().map_err(written)
    };
    // Requests that asked for no tokens finished when submitted.
    let mut finished = 0usize;
    for (&id, &origin) in &origins {
        if let Some(out) = decoder.take_output(id) {
            write_output(&out, origin)?;
            finished += 1;
        }
    }
    eprintln!(
        "admission: at most {} rows and {} MiB of KV cache per step; {} of {total} requests start now",
        limits.max_rows,
        limits.max_kv_bytes >> 20,
        total - decoder.queued(),
    );
    interrupt::install()?;
    let started = Instant::now();
    let mut generated = 0usize;
    while !decoder.is_idle() {
        if interrupt::interrupted() {
            eprintln!(
                "interrupted: {finished} of {total} requests finished and written; {} running or \
                 queued were dropped",
                total - finished
            );
            return Ok(interrupt::EXIT_CODE);
        }
        let step = decoder.step()?;
        generated += step.len();
        for t in &step {
            if stream_text && !t.text_delta.is_empty() {
                let mut out = std::io::stdout().lock();
                write!(out, "{}", t.text_delta).map_err(written)?;
                out.flush().map_err(written)?;
            }
            if t.finish.is_none() {
                continue;
            }
            // Both are there for every request this run submitted, which are all there are.
            let (Some(out), Some(&origin)) = (decoder.take_output(t.id), origins.get(&t.id)) else {
                continue;
            };
            finished += 1;
            write_output(&out, origin)?;
        }
    }
    if stream_text {
        writeln!(std::io::stdout()).map_err(written)?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{generated} tokens in {secs:.2} s: {:.2} tokens/s over {total} requests",
        generated as f64 / secs.max(1e-9),
    );
    Ok(0)
}
