//! `ascend-cold decode`: greedy, CoLD or sampled generation from a model and PEFT adapters, one prompt
//! or a JSONL file of requests run together in one batch.

use crate::inspect::parse_named_dir;
use ascend_cold::decode::{
    encode_prompt, Decoder, Output, Request, SamplingParams, StopRules, Strategy,
};
use ascend_cold::model::{
    load_model, Adapter, DeviceLora, LlamaModel, LoraDelta, ModelFiles, StackedAdapters,
    WeightDtype,
};
use ascend_cold::{Error, Result, Stream};
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
    /// missing fields take the command line's values.
    #[arg(long)]
    pub requests: Option<PathBuf>,
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
    /// Print one JSON object per request instead of streaming text.
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

/// One request line of `--requests` (every field optional; the command line fills the rest).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestLine {
    prompt: Option<String>,
    prompt_ids: Option<Vec<u32>>,
    adapter: Option<String>,
    strategy: Option<String>,
    alpha: Option<f32>,
    beta: Option<f32>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    seed: Option<u64>,
    max_new_tokens: Option<usize>,
    ignore_eos: Option<bool>,
    stop: Option<Vec<String>>,
    chat: Option<bool>,
}

fn build_request(session: &Session, args: &DecodeArgs, line: RequestLine) -> Result<Request> {
    let prompt = match (line.prompt, line.prompt_ids) {
        (Some(text), None) => session.encode(&text, line.chat.unwrap_or(args.chat))?,
        (None, Some(ids)) => ids,
        _ => {
            return Err(Error::parameter(
                "request",
                "exactly one of prompt or prompt_ids",
                "both or neither",
            ))
        }
    };
    let strategy = match line.strategy.as_deref().unwrap_or(match args.strategy {
        StrategyArg::Greedy => "greedy",
        StrategyArg::Cold => "cold",
    }) {
        "greedy" => Strategy::Greedy,
        "cold" => Strategy::Cold {
            alpha: line.alpha.unwrap_or(args.alpha),
            beta: line.beta.unwrap_or(args.beta),
        },
        other => return Err(Error::parameter("strategy", "greedy or cold", other)),
    };
    let adapter =
        session.adapter_index(line.adapter.as_deref().or(args.adapter_name.as_deref()))?;
    Ok(Request {
        prompt,
        adapter,
        strategy,
        sampling: SamplingParams {
            temperature: line.temperature.unwrap_or(args.temperature),
            top_k: line.top_k.unwrap_or(args.top_k),
            top_p: line.top_p.unwrap_or(args.top_p),
            seed: line.seed.unwrap_or(args.seed),
        },
        stop: StopRules {
            ignore_eos: line.ignore_eos.unwrap_or(args.ignore_eos),
            stop_strings: line.stop.unwrap_or_else(|| args.stop.clone()),
            ..StopRules::for_model(
                &session.files.config,
                line.max_new_tokens.unwrap_or(args.max_new_tokens),
            )
        },
    })
}

/// The `--json` object of one request.
pub fn output_json(out: &Output) -> serde_json::Value {
    serde_json::json!({
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

/// Runs the command; exit code 0.
pub fn run(args: &DecodeArgs) -> Result<u8> {
    let session = Session::open(
        &args.model,
        &args.adapters,
        args.device,
        args.weights,
        args.lora_dtype,
    )?;
    let lines: Vec<RequestLine> = match (&args.requests, &args.prompt, &args.prompt_ids) {
        (Some(path), _, _) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l).map_err(|e| Error::InvalidFile {
                        path: path.clone(),
                        field: format!("line {}", i + 1),
                        detail: e.to_string(),
                    })
                })
                .collect::<Result<_>>()?
        }
        (None, Some(p), _) => vec![RequestLine {
            prompt: Some(p.clone()),
            ..Default::default()
        }],
        (None, None, Some(ids)) => vec![RequestLine {
            prompt_ids: Some(ids.clone()),
            ..Default::default()
        }],
        (None, None, None) => {
            return Err(Error::parameter(
                "prompt",
                "--prompt, --prompt-ids or --requests",
                "none",
            ))
        }
    };
    let mut decoder = session.decoder();
    let ids = lines
        .into_iter()
        .map(|line| decoder.submit(build_request(&session, args, line)?))
        .collect::<Result<Vec<_>>>()?;
    let stream_text = !args.json && ids.len() == 1;
    let started = Instant::now();
    let mut generated = 0usize;
    while !decoder.is_idle() {
        let step = decoder.step()?;
        generated += step.len();
        if stream_text {
            for t in step.iter().filter(|t| !t.text_delta.is_empty()) {
                print!("{}", t.text_delta);
                std::io::stdout().flush().ok();
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let outputs: Vec<&Output> = ids.iter().filter_map(|id| decoder.output(*id)).collect();
    if args.json {
        if let [one] = outputs.as_slice() {
            println!("{}", output_json(one));
        } else {
            for out in &outputs {
                println!("{}", output_json(out));
            }
        }
    } else if stream_text {
        println!();
    } else {
        for (i, out) in outputs.iter().enumerate() {
            println!(
                "--- request {i} ({:?}, {} tokens)\n{}",
                out.finish.map(|f| f.as_str()),
                out.tokens.len(),
                out.text
            );
        }
    }
    eprintln!(
        "{generated} tokens in {secs:.2} s: {:.2} tokens/s over {} requests",
        generated as f64 / secs.max(1e-9),
        ids.len()
    );
    Ok(0)
}
