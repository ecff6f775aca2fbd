//! `ascend-cold eval`: accuracy of greedy (base), greedy (adapter) and CoLD on a task file of word
//! problems whose answers end with `#### <number>` (study/README.md has the format), run in
//! multi-request batches.

use crate::decode::{LoraDtype, Session, WeightsArg};
use crate::inspect::parse_named_dir;
use crate::stats;
use ascend_cold::decode::{Output, Request, RequestId, SamplingParams, StopRules, Strategy};
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
    /// Problems in flight at once, each with every decoding (CoLD counts two rows).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Most new tokens per problem, at least 1.
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
            "base" => configs.push((BASE.into(), -1, Strategy::Greedy)),
            "adapter" => configs.push((ADAPTER.into(), 0, Strategy::Greedy)),
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
            "{bar:40} {pos}/{len} decodings  {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let stop = StopRules::for_model(&session.files.config, args.max_new_tokens);
    // results[config][problem]
    let mut results: Vec<Vec<Option<Graded>>> = vec![vec![None; problems.len()]; configs.len()];
    let started = Instant::now();
    let mut generated = 0usize;
    {
        // Continuous batching: up to `--batch` problems in flight, each with every configuration, so
        // the requests of one problem join at the same step and share its prefill (one per adapter).
        let mut decoder = session.decoder();
        let mut in_flight: Vec<(RequestId, usize, usize)> = vec![];
        let mut next_problem = 0;
        loop {
            while next_problem < problems.len()
                && in_flight.len() + configs.len() <= args.batch.max(1) * configs.len()
            {
                for (c, (_, adapter, strategy)) in configs.iter().enumerate() {
                    let id = decoder.submit(Request {
                        prompt: prompts[next_problem].clone(),
                        adapter: *adapter,
                        strategy: *strategy,
                        sampling: SamplingParams::default(),
                        stop: stop.clone(),
                    })?;
                    in_flight.push((id, c, next_problem));
                }
                next_problem += 1;
            }
            if in_flight.is_empty() {
                break;
            }
            let finished: Vec<RequestId> = decoder
                .step()?
                .into_iter()
                .filter(|t| t.finish.is_some())
                .map(|t| t.id)
                .collect();
            in_flight.retain(|&(id, c, p)| {
                if !finished.contains(&id) {
                    return true;
                }
                let o = decoder
                    .output(id)
                    .expect("a finished request keeps its output");
                results[c][p] = Some(Graded::new(&problems[p].answer, o));
                generated += o.tokens.len();
                bar.inc(1);
                log_progress(bar.position(), total, started);
                false
            });
        }
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let results: Vec<Vec<Graded>> = results
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|g| g.expect("every request finished"))
                .collect()
        })
        .collect();
    if let Some(file) = out.as_mut() {
        use std::io::Write;
        for ((label, _, _), per_problem) in configs.iter().zip(&results) {
            for (p, g) in problems.iter().zip(per_problem) {
                let line = serde_json::json!({
                    "id": p.id, "config": label, "answer": p.answer,
                    "correct_strict": g.strict, "correct_flexible": g.flexible,
                    "tokens": g.tokens, "finish": g.finish, "latency_s": g.latency_s, "text": g.text,
                });
                writeln!(file, "{line}").map_err(|source| Error::Io {
                    path: args.out.clone().unwrap_or_default(),
                    source,
                })?;
            }
        }
    }
    print_table(&configs, &results);
    println!(
        "{} problems x {} decodings in {wall:.1} s ({:.2} s/problem for all of them, {:.1} generated \
         tokens/s overall, up to {} problems in flight)",
        problems.len(),
        configs.len(),
        wall / problems.len() as f64,
        generated as f64 / wall,
        args.batch.max(1)
    );
    Ok(0)
}

/// Without a terminal the bar is hidden, so a long run in a log says where it is: a line on stderr at
/// every tenth of the work.
fn log_progress(done: u64, total: u64, started: Instant) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() || total == 0 {
        return;
    }
    if (done * 10 / total) != ((done - 1) * 10 / total) {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "eval: {done}/{total} decodings done in {secs:.0} s (eta {:.0} s)",
            secs / done as f64 * (total - done) as f64
        );
    }
}

/// One decoding of one problem, graded.
#[derive(Clone)]
struct Graded {
    strict: bool,
    flexible: bool,
    tokens: usize,
    finish: String,
    latency_s: f64,
    text: String,
}

impl Graded {
    fn new(answer: &str, o: &Output) -> Self {
        let want: Option<f64> = answer.trim().parse().ok();
        let (s, f) = parse_answer(&o.text);
        Graded {
            strict: s.is_some() && s == want,
            flexible: f.is_some() && f == want,
            tokens: o.tokens.len(),
            finish: o.finish.map_or("none", |f| f.as_str()).to_string(),
            latency_s: (o.timings.prefill + o.timings.decode).as_secs_f64(),
            text: o.text.clone(),
        }
    }
}

/// The accuracy table (with 95% Wilson intervals) and the paired tests: the adapter against the base
/// model, and every CoLD setting against the adapter's greedy decoding.
fn print_table(configs: &[(String, i64, Strategy)], results: &[Vec<Graded>]) {
    println!(
        "{:<24} {:>22} {:>22} {:>9} {:>10} {:>9}",
        "decoding", "strict % (95% CI)", "flexible % (95% CI)", "mean len", "latency s", "tokens/s"
    );
    let pct = |k: usize, n: usize| {
        let (lo, hi) = stats::wilson95(k, n);
        format!(
            "{:.1} ({:.1}-{:.1})",
            100.0 * k as f64 / n as f64,
            100.0 * lo,
            100.0 * hi
        )
    };
    for ((label, _, _), r) in configs.iter().zip(results) {
        let n = r.len();
        let strict = r.iter().filter(|g| g.strict).count();
        let flexible = r.iter().filter(|g| g.flexible).count();
        let tokens: usize = r.iter().map(|g| g.tokens).sum();
        let latency: f64 = r.iter().map(|g| g.latency_s).sum();
        println!(
            "{label:<24} {:>22} {:>22} {:>9.1} {:>10.2} {:>9.1}",
            pct(strict, n),
            pct(flexible, n),
            tokens as f64 / n as f64,
            latency / n as f64,
            tokens as f64 / latency.max(f64::MIN_POSITIVE)
        );
    }
    let find = |name: &str| configs.iter().position(|(l, _, _)| l == name);
    let mut pairs = vec![];
    if let (Some(a), Some(b)) = (find(ADAPTER), find(BASE)) {
        pairs.push((a, b));
    }
    if let Some(a) = find(ADAPTER) {
        pairs.extend(
            (0..configs.len())
                .filter(|&c| configs[c].0.starts_with("CoLD"))
                .map(|c| (c, a)),
        );
    }
    if pairs.is_empty() {
        return;
    }
    println!("paired on the same problems (strict; exact McNemar test, two-sided):");
    for (x, y) in pairs {
        let only_x = (0..results[x].len())
            .filter(|&p| results[x][p].strict && !results[y][p].strict)
            .count();
        let only_y = (0..results[x].len())
            .filter(|&p| !results[x][p].strict && results[y][p].strict)
            .count();
        let n = results[x].len() as f64;
        println!(
            "  {} vs {}: {:+.1} points ({only_x} right only with the first, {only_y} only with the second), p = {}",
            configs[x].0,
            configs[y].0,
            100.0 * (only_x as f64 - only_y as f64) / n,
            stats::format_p(stats::mcnemar_exact(only_x, only_y))
        );
    }
}

const BASE: &str = "greedy (base)";
const ADAPTER: &str = "greedy (adapter)";

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
