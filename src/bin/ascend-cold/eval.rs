//! `ascend-cold eval`: accuracy of greedy (base), greedy (adapter) and CoLD on a task file of word
//! problems whose answers end with `#### <number>` (study/README.md has the format), run in
//! multi-request batches.

use crate::decode::{LoraDtype, Session, WeightsArg};
use crate::inspect::parse_named_dir;
use ascend_cold::decode::{Request, SamplingParams, StopRules, Strategy};
use ascend_cold::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The task: JSONL with "id", "prompt", "answer", "split".
    #[arg(long)]
    pub task: PathBuf,
    /// Only problems of this split (train, dev or test); all when absent.
    #[arg(long)]
    pub split: Option<String>,
    /// At most this many problems.
    #[arg(long)]
    pub limit: Option<usize>,
    /// A Hugging Face model folder or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The expert adapter as NAME=DIR.
    #[arg(long, value_parser = parse_named_dir)]
    pub adapter: (String, PathBuf),
    /// Which decodings: base (greedy, no adapter), adapter (greedy with it), cold (CoLD).
    #[arg(long, value_delimiter = ',', default_value = "base,adapter,cold")]
    pub modes: Vec<String>,
    /// CoLD's alpha values (a sweep when several).
    #[arg(long, value_delimiter = ',', default_value = "0.1")]
    pub alpha: Vec<f32>,
    /// CoLD's beta values (a sweep when several).
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    pub beta: Vec<f32>,
    /// Requests per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Most new tokens per problem.
    #[arg(long, default_value_t = 160)]
    pub max_new_tokens: usize,
    /// auto, emu[:N] or npu[:N].
    #[arg(long, default_value = "auto")]
    pub device: ascend_cold::DeviceSpec,
    /// Write one JSON line per (problem, configuration) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
struct Problem {
    id: String,
    prompt: String,
    answer: String,
    #[serde(default)]
    split: Option<String>,
}

/// The number after the last `####`, if any (strict), else the last number in the text (flexible).
pub fn parse_answer(text: &str) -> (Option<f64>, Option<f64>) {
    let number = |s: &str| -> Option<f64> {
        let t: String = s
            .trim()
            .trim_end_matches('.')
            .chars()
            .filter(|c| *c != ',' && *c != '$')
            .collect();
        t.split_whitespace().next()?.parse().ok()
    };
    let strict = text.rsplit_once("####").and_then(|(_, rest)| number(rest));
    let flexible = strict.or_else(|| {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .rev()
            .find_map(|w| w.trim_end_matches('.').parse::<f64>().ok())
    });
    (strict, flexible)
}

/// Runs the evaluation and prints one table row per configuration.
pub fn run(args: &EvalArgs) -> Result<u8> {
    let text = std::fs::read_to_string(&args.task).map_err(|source| Error::Io {
        path: args.task.clone(),
        source,
    })?;
    let mut problems = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let p: Problem = serde_json::from_str(line).map_err(|e| Error::InvalidFile {
            path: args.task.clone(),
            field: format!("line {}", i + 1),
            detail: e.to_string(),
        })?;
        if args
            .split
            .as_deref()
            .is_none_or(|s| p.split.as_deref() == Some(s))
        {
            problems.push(p);
        }
    }
    problems.truncate(args.limit.unwrap_or(usize::MAX));
    if problems.is_empty() {
        return Err(Error::parameter(
            "task",
            "at least one problem (check --split)",
            0,
        ));
    }
    let session = Session::open(
        &args.model,
        std::slice::from_ref(&args.adapter),
        args.device,
        WeightsArg::Bf16,
        LoraDtype::Bf16,
    )?;
    let mut configs: Vec<(String, i64, Strategy)> = vec![];
    for mode in &args.modes {
        match mode.as_str() {
            "base" => configs.push(("greedy (base)".into(), -1, Strategy::Greedy)),
            "adapter" => configs.push(("greedy (adapter)".into(), 0, Strategy::Greedy)),
            "cold" => {
                for &alpha in &args.alpha {
                    for &beta in &args.beta {
                        configs.push((
                            format!("CoLD a={alpha} b={beta}"),
                            0,
                            Strategy::Cold { alpha, beta },
                        ));
                    }
                }
            }
            other => return Err(Error::parameter("modes", "base, adapter or cold", other)),
        }
    }
    let prompts = problems
        .iter()
        .map(|p| session.encode(&p.prompt, true))
        .collect::<Result<Vec<_>>>()?;
    let mut out = match &args.out {
        Some(path) => Some(std::fs::File::create(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let total = (configs.len() * problems.len()) as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} problems  {elapsed_precise} (eta {eta})  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>12} {:>10}",
        "decoding", "strict", "flexible", "mean len", "s/problem", "tokens/s"
    );
    for (label, adapter, strategy) in &configs {
        bar.set_message(label.clone());
        let (mut strict, mut flexible, mut tokens) = (0usize, 0usize, 0usize);
        let started = Instant::now();
        for (chunk, chunk_prompts) in problems
            .chunks(args.batch.max(1))
            .zip(prompts.chunks(args.batch.max(1)))
        {
            let mut decoder = session.decoder();
            let ids = chunk_prompts
                .iter()
                .map(|prompt| {
                    decoder.submit(Request {
                        prompt: prompt.clone(),
                        adapter: *adapter,
                        strategy: *strategy,
                        sampling: SamplingParams::default(),
                        stop: StopRules {
                            eos_tokens: session.files.config.eos_token_ids.clone(),
                            ignore_eos: false,
                            stop_strings: vec![],
                            max_new_tokens: args.max_new_tokens,
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            decoder.run()?;
            for (p, id) in chunk.iter().zip(ids) {
                let o = decoder.output(id).expect("submitted");
                let want: Option<f64> = p.answer.trim().parse().ok();
                let (s, f) = parse_answer(&o.text);
                let ok_s = s.is_some() && s == want;
                let ok_f = f.is_some() && f == want;
                strict += usize::from(ok_s);
                flexible += usize::from(ok_f);
                tokens += o.tokens.len();
                if let Some(file) = out.as_mut() {
                    use std::io::Write;
                    let line = serde_json::json!({"id": p.id, "config": label, "correct_strict": ok_s, "correct_flexible": ok_f, "tokens": o.tokens.len(), "text": o.text});
                    writeln!(file, "{line}").map_err(|source| Error::Io {
                        path: args.out.clone().unwrap_or_default(),
                        source,
                    })?;
                }
                bar.inc(1);
            }
        }
        let n = problems.len() as f64;
        let secs = started.elapsed().as_secs_f64();
        bar.suspend(|| {
            println!(
                "{label:<28} {:>8.1}% {:>8.1}% {:>9.1} {:>12.2} {:>10.1}",
                100.0 * strict as f64 / n,
                100.0 * flexible as f64 / n,
                tokens as f64 / n,
                secs / n,
                tokens as f64 / secs
            )
        });
    }
    bar.finish_and_clear();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_answer;

    #[test]
    fn answers_are_read_strictly_then_flexibly() {
        assert_eq!(
            parse_answer("3 * 4 = 12 apples.\n#### 12"),
            (Some(12.0), Some(12.0))
        );
        assert_eq!(parse_answer("#### 1,200."), (Some(1200.0), Some(1200.0)));
        assert_eq!(parse_answer("So she has 7 left."), (None, Some(7.0)));
        assert_eq!(parse_answer("no number"), (None, None));
    }
}
