//! `ascend-cold eval`: accuracy of greedy (base), greedy (adapter) and CoLD on a task file of word
//! problems (docs/EVAL.md), run in multi-request batches. Each finished decoding is appended to
//! `--out` at once, so an interrupted run keeps its work and `--resume` finishes it; answers are read
//! by `ascend_cold::answer`, the statistics are `stats.rs`'s, and `--summary` writes the table as
//! JSON for the study's report.

use crate::decode::{LoraDtype, Session, WeightsArg};
use crate::inspect::parse_named_dir;
use crate::{interrupt, stats};
use ascend_cold::answer::{self, Number};
use ascend_cold::decode::{Output, Request, RequestId, SamplingParams, StopRules, Strategy};
use ascend_cold::task::{self, Problem};
use ascend_cold::{outfile, Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The task: JSONL with "id", "prompt", "answer" and optionally "split" (docs/EVAL.md).
    #[arg(long)]
    pub task: PathBuf,
    /// Only problems of this split (train, dev or test); all when absent.
    #[arg(long)]
    pub split: Option<String>,
    /// At most this many problems.
    #[arg(long)]
    pub limit: Option<usize>,
    /// A Hugging Face model folder or a .gguf file (not needed with --regrade).
    #[arg(long, required_unless_present = "regrade")]
    pub model: Option<PathBuf>,
    /// The expert adapter as NAME=DIR (not needed with --regrade).
    #[arg(long, value_parser = parse_named_dir, required_unless_present = "regrade")]
    pub adapter: Option<(String, PathBuf)>,
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
    /// Append one JSON line per finished (problem, decoding) here as it finishes. An existing
    /// non-empty file is refused unless --resume (or --regrade) is given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run recorded in --out: what it holds is kept, only the missing decodings run.
    /// Give the same task, model, adapter and decodings as the run that wrote it.
    #[arg(long, requires = "out", conflicts_with = "regrade")]
    pub resume: bool,
    /// Decode nothing: grade the texts recorded in --out again with this eval's answer parser,
    /// rewrite --out with the new grades, and print (and --summary) the table.
    #[arg(long, requires = "out")]
    pub regrade: bool,
    /// Write the table as JSON here (accuracies with Wilson intervals, paired McNemar tests).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Testing aid: stop as SIGINT would once this many decodings are recorded.
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

/// One decoding of one problem, graded: a line of `--out` (docs/EVAL.md, "Records").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Record {
    id: String,
    config: String,
    answer: String,
    /// Absent in records of evals before the shared answer parser; `--regrade` fills them in.
    #[serde(default)]
    parsed_strict: Option<String>,
    #[serde(default)]
    parsed_flexible: Option<String>,
    correct_strict: bool,
    correct_flexible: bool,
    tokens: usize,
    finish: String,
    latency_s: f64,
    text: String,
}

impl Record {
    fn new(problem: &Problem, config: &str, o: &Output) -> Self {
        Record {
            id: problem.id.clone(),
            config: config.to_string(),
            answer: problem.answer.to_string(),
            parsed_strict: None,
            parsed_flexible: None,
            correct_strict: false,
            correct_flexible: false,
            tokens: o.tokens.len(),
            finish: o.finish.map_or("none", |f| f.as_str()).to_string(),
            latency_s: (o.timings.prefill + o.timings.decode).as_secs_f64(),
            text: o.text.clone(),
        }
        .graded(&problem.answer)
    }

    /// This record with its answers read and judged by `ascend_cold::answer`.
    fn graded(self, want: &Number) -> Self {
        let read = answer::read(&self.text);
        Record {
            correct_strict: read.strict.as_ref() == Some(want),
            correct_flexible: read.flexible.as_ref() == Some(want),
            parsed_strict: read.strict.map(|n| n.to_string()),
            parsed_flexible: read.flexible.map(|n| n.to_string()),
            ..self
        }
    }

    fn line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("records serialise");
        line.push('\n');
        line
    }
}

/// A decoding to run on every problem.
struct Config {
    label: String,
    adapter: i64,
    strategy: Strategy,
}

/// `results[config][problem]`.
type Results = Vec<Vec<Option<Record>>>;

/// Runs the evaluation and prints one table row per configuration.
pub fn run(args: &EvalArgs) -> Result<u8> {
    let mut problems = task::read(&args.task)?;
    problems.retain(|p| {
        args.split
            .as_deref()
            .is_none_or(|s| p.split.as_deref() == Some(s))
    });
    problems.truncate(args.limit.unwrap_or(usize::MAX));
    if problems.is_empty() {
        return Err(Error::parameter(
            "task",
            "at least one problem (check --split)",
            0,
        ));
    }
    let configs = configs(args)?;
    outfile::refuse_overlap(
        &[
            ("--out", args.out.as_deref()),
            ("--summary", args.summary.as_deref()),
        ],
        &[
            ("--task", Some(&args.task)),
            ("--model", args.model.as_deref()),
            ("--adapter", args.adapter.as_ref().map(|(_, d)| d.as_path())),
        ],
    )?;
    let mut out = match &args.out {
        Some(path) if args.regrade && !path.exists() => {
            return Err(Error::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no records to re-grade (--regrade reads the file an eval --out wrote)",
                ),
            })
        }
        Some(path) => Some(Records::open(path, args.resume || args.regrade)?),
        None => None,
    };
    let mut results: Results = vec![vec![None; problems.len()]; configs.len()];
    if let Some(out) = out.as_mut() {
        out.load(&problems, &configs, !args.regrade, &mut results)?;
    }
    if args.regrade {
        let Some(out) = out.as_ref() else {
            return Err(Error::parameter(
                "--regrade",
                "--out FILE to re-grade",
                "none",
            ));
        };
        let missing = results.iter().flatten().filter(|r| r.is_none()).count();
        if missing > 0 {
            return Err(Error::parameter(
                "--regrade",
                format!(
                    "a complete {} (every problem with every decoding)",
                    out.path.display()
                ),
                format!("{missing} decodings missing; finish the run with --resume first"),
            ));
        }
        for row in results.iter_mut() {
            for (p, r) in row.iter_mut().enumerate() {
                *r = r.take().map(|r| r.graded(&problems[p].answer));
            }
        }
        let text: String = results
            .iter()
            .flatten()
            .flatten()
            .map(Record::line)
            .collect();
        outfile::write_atomic(&out.path, text.as_bytes())?;
    } else if let Some(decoded) = decode(args, &problems, &configs, &mut results, out.as_mut())? {
        decoded.print(problems.len(), configs.len(), args.batch.max(1));
    } else {
        return Ok(interrupt::EXIT_CODE);
    }
    let results: Vec<Vec<Record>> = results
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|r| r.expect("every decoding ran"))
                .collect()
        })
        .collect();
    let summary = Summary::new(&configs, &results);
    summary.print();
    if let Some(path) = &args.summary {
        let text = serde_json::to_string_pretty(&summary).expect("summaries serialise") + "\n";
        outfile::write_atomic(path, text.as_bytes())?;
    }
    Ok(0)
}

fn configs(args: &EvalArgs) -> Result<Vec<Config>> {
    let mut configs = vec![];
    for mode in &args.modes {
        match mode.as_str() {
            "base" => configs.push(Config {
                label: BASE.into(),
                adapter: -1,
                strategy: Strategy::Greedy,
            }),
            "adapter" => configs.push(Config {
                label: ADAPTER.into(),
                adapter: 0,
                strategy: Strategy::Greedy,
            }),
            "cold" => {
                for &alpha in &args.alpha {
                    for &beta in &args.beta {
                        configs.push(Config {
                            label: format!("CoLD a={alpha} b={beta}"),
                            adapter: 0,
                            strategy: Strategy::Cold { alpha, beta },
                        });
                    }
                }
            }
            other => return Err(Error::parameter("modes", "base, adapter or cold", other)),
        }
    }
    // Records are keyed by the label, so each decoding may appear once.
    for (k, c) in configs.iter().enumerate() {
        if configs[..k].iter().any(|earlier| earlier.label == c.label) {
            return Err(Error::parameter(
                "modes",
                "each decoding once (check --modes, --alpha and --beta for repeats)",
                format!("{} twice", c.label),
            ));
        }
    }
    Ok(configs)
}

/// The `--out` file: locked for this run, appended to one flushed line per finished decoding.
struct Records {
    path: PathBuf,
    file: File,
}

impl Records {
    /// Opens and locks `path`; refuses a non-empty file unless the run continues or re-grades it.
    fn open(path: &Path, continuing: bool) -> Result<Self> {
        let file = outfile::open_locked(path)?;
        let len = file
            .metadata()
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        if len > 0 && !continuing {
            return Err(Error::parameter(
                "--out",
                "a new or empty file, or --resume to continue the run it records",
                format!(
                    "{} ({len} bytes of earlier results; pass --resume to finish that run, or \
                     remove the file to start over)",
                    path.display()
                ),
            ));
        }
        Ok(Records {
            path: path.to_path_buf(),
            file,
        })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> Error + '_ {
        |source| Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads the records already in the file into `results`, checking each against this run's
    /// problems and decodings (and, when `check_grades`, against this eval's answer parser). A
    /// last line cut short by a killed run is dropped from the file: that decoding runs again.
    fn load(
        &mut self,
        problems: &[Problem],
        configs: &[Config],
        check_grades: bool,
        results: &mut Results,
    ) -> Result<()> {
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes).map_err(self.io())?;
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |last| last + 1);
        if complete < bytes.len() {
            let tail = &bytes[complete..];
            if serde_json::from_slice::<Record>(tail).is_ok() {
                // A whole record without its newline: keep it, and end it so appends start a line.
                self.file.write_all(b"\n").map_err(self.io())?;
            } else {
                self.file.set_len(complete as u64).map_err(self.io())?;
                eprintln!(
                    "eval: dropped the unfinished last line of {} ({} bytes, cut off when the run \
                     writing it was killed); that decoding runs again",
                    self.path.display(),
                    tail.len()
                );
                bytes.truncate(complete);
            }
        }
        let problem_index: HashMap<&str, usize> = problems
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        let config_index: HashMap<&str, usize> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.label.as_str(), i))
            .collect();
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let invalid = |detail: String| Error::InvalidFile {
                path: self.path.clone(),
                field: format!("line {}", n + 1),
                detail,
            };
            let record: Record = serde_json::from_slice(line)
                .map_err(|e| invalid(format!("expected an eval record (docs/EVAL.md): {e}")))?;
            let c =
                *config_index.get(record.config.as_str()).ok_or_else(|| {
                    invalid(format!(
                    "decoding {:?} is not one of this run's ({}); give the --modes, --alpha and \
                     --beta of the run that wrote the file",
                    record.config,
                    configs.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(", ")
                ))
                })?;
            let p = *problem_index.get(record.id.as_str()).ok_or_else(|| {
                invalid(format!(
                    "problem {:?} is not among this run's {} problems of {} (check --split and \
                     --limit)",
                    record.id,
                    problems.len(),
                    self.path.display()
                ))
            })?;
            if record.answer != problems[p].answer.as_str() {
                return Err(invalid(format!(
                    "problem {:?} has answer {:?} here but {} in the task file",
                    record.id, record.answer, problems[p].answer
                )));
            }
            if check_grades && record.clone().graded(&problems[p].answer) != record {
                return Err(invalid(format!(
                    "the grade of problem {:?} under {:?} is not what this eval's answer parser \
                     gives (an older eval wrote it?); run the same command with --regrade instead \
                     of --resume to grade the file again",
                    record.id, record.config
                )));
            }
            if results[c][p].is_some() {
                return Err(invalid(format!(
                    "problem {:?} under {:?} is recorded twice",
                    record.id, record.config
                )));
            }
            results[c][p] = Some(record);
        }
        Ok(())
    }

    /// Appends one record as one write, so that a reader (or a resumed run) sees whole lines.
    fn append(&mut self, record: &Record) -> Result<()> {
        self.file
            .write_all(record.line().as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(self.io())
    }
}

/// What a finished decoding pass did, for its closing line.
struct Decoded {
    wall_s: f64,
    generated: usize,
    decodings: usize,
}

impl Decoded {
    fn print(&self, problems: usize, configs: usize, batch: usize) {
        println!(
            "{} decodings run in {:.1} s ({:.1} generated tokens/s overall, up to {batch} problems \
             in flight); the table covers {problems} problems x {configs} decodings",
            self.decodings,
            self.wall_s,
            self.generated as f64 / self.wall_s.max(f64::MIN_POSITIVE),
        );
    }
}

/// Decodes every (problem, configuration) not yet in `results`, appending each to `out` as it
/// finishes. `None` when SIGINT (or `--stop-after`) ended it first.
fn decode(
    args: &EvalArgs,
    problems: &[Problem],
    configs: &[Config],
    results: &mut Results,
    mut out: Option<&mut Records>,
) -> Result<Option<Decoded>> {
    let pending = |results: &Results, p: usize| -> Vec<usize> {
        (0..configs.len())
            .filter(|&c| results[c][p].is_none())
            .collect()
    };
    let total: usize = (0..problems.len()).map(|p| pending(results, p).len()).sum();
    let started = Instant::now();
    let mut decoded = Decoded {
        wall_s: 0.0,
        generated: 0,
        decodings: 0,
    };
    if total == 0 {
        return Ok(Some(decoded));
    }
    interrupt::install()?;
    let missing = |flag| Error::parameter(flag, "a value (needed unless --regrade)", "none");
    let model = args.model.as_ref().ok_or_else(|| missing("--model"))?;
    let adapter = args.adapter.as_ref().ok_or_else(|| missing("--adapter"))?;
    let session = Session::open(
        model,
        std::slice::from_ref(adapter),
        args.device,
        WeightsArg::Bf16,
        LoraDtype::Bf16,
    )?;
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} decodings  {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let stop = StopRules::for_model(&session.files.config, args.max_new_tokens);
    let capacity = args.batch.max(1).saturating_mul(configs.len());
    let mut stopped = false;
    {
        // Continuous batching: up to `--batch` problems in flight, each with every configuration it
        // still needs, so the requests of one problem join at the same step and share its prefill
        // (one per adapter).
        let mut decoder = session.decoder();
        let mut in_flight: Vec<(RequestId, usize, usize)> = vec![];
        let mut next_problem = 0;
        loop {
            if interrupt::interrupted() || stopped {
                stopped = true;
                break;
            }
            while next_problem < problems.len() {
                let todo = pending(results, next_problem);
                if in_flight.len() + todo.len() > capacity {
                    break;
                }
                let prompt = session.encode(&problems[next_problem].prompt, true)?;
                for c in todo {
                    let id = decoder.submit(Request {
                        prompt: prompt.clone(),
                        adapter: configs[c].adapter,
                        strategy: configs[c].strategy,
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
            let mut k = 0;
            while k < in_flight.len() {
                let (id, c, p) = in_flight[k];
                if !finished.contains(&id) {
                    k += 1;
                    continue;
                }
                in_flight.swap_remove(k);
                let o = decoder
                    .output(id)
                    .expect("a finished request keeps its output");
                let record = Record::new(&problems[p], &configs[c].label, o);
                if let Some(out) = out.as_deref_mut() {
                    out.append(&record)?;
                }
                decoded.generated += record.tokens;
                decoded.decodings += 1;
                results[c][p] = Some(record);
                bar.inc(1);
                log_progress(bar.position(), total as u64, started);
                stopped |= args.stop_after.is_some_and(|n| decoded.decodings >= n);
            }
        }
    }
    bar.finish_and_clear();
    if stopped {
        match &out {
            Some(out) => eprintln!(
                "eval: interrupted with {} of {total} decodings done; every finished one is in {}. \
                 Run the same command with --resume to finish the rest.",
                decoded.decodings,
                out.path.display()
            ),
            None => eprintln!(
                "eval: interrupted with {} of {total} decodings done; nothing was kept (give --out \
                 FILE to keep finished decodings and --resume to continue)",
                decoded.decodings
            ),
        }
        return Ok(None);
    }
    decoded.wall_s = started.elapsed().as_secs_f64();
    Ok(Some(decoded))
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

/// The table `eval` prints and `--summary` writes (docs/EVAL.md, "Summary"): every number the
/// study's report quotes, so that it reads them instead of computing them again.
#[derive(serde::Serialize)]
struct Summary {
    problems: usize,
    decodings: Vec<DecodingRow>,
    paired: Vec<Paired>,
}

#[derive(serde::Serialize)]
struct DecodingRow {
    config: String,
    strict: Accuracy,
    flexible: Accuracy,
    mean_tokens: f64,
    mean_latency_s: f64,
    /// `None` when no time was recorded (records written by another program).
    tokens_per_s: Option<f64>,
}

#[derive(serde::Serialize)]
struct Accuracy {
    correct: usize,
    of: usize,
    rate: f64,
    wilson95: [f64; 2],
}

impl Accuracy {
    fn new(correct: usize, of: usize) -> Self {
        let (lo, hi) = stats::wilson95(correct, of);
        Accuracy {
            correct,
            of,
            rate: correct as f64 / of as f64,
            wilson95: [lo, hi],
        }
    }

    fn cell(&self) -> String {
        format!(
            "{:.1} ({:.1}-{:.1})",
            100.0 * self.rate,
            100.0 * self.wilson95[0],
            100.0 * self.wilson95[1]
        )
    }
}

/// Two decodings on the same problems under one metric: the exact McNemar test.
#[derive(serde::Serialize)]
struct Paired {
    first: String,
    second: String,
    metric: &'static str,
    only_first: usize,
    only_second: usize,
    /// Accuracy of the first minus the second, in percentage points.
    points: f64,
    mcnemar_p: f64,
}

impl Summary {
    /// The rows, and the paired tests: the adapter against the base model, and every CoLD setting
    /// against the adapter's greedy decoding, each under strict and flexible grading.
    fn new(configs: &[Config], results: &[Vec<Record>]) -> Self {
        let n = results.first().map_or(0, Vec::len);
        let decodings = configs
            .iter()
            .zip(results)
            .map(|(c, r)| {
                let tokens: usize = r.iter().map(|g| g.tokens).sum();
                let latency: f64 = r.iter().map(|g| g.latency_s).sum();
                DecodingRow {
                    config: c.label.clone(),
                    strict: Accuracy::new(r.iter().filter(|g| g.correct_strict).count(), n),
                    flexible: Accuracy::new(r.iter().filter(|g| g.correct_flexible).count(), n),
                    mean_tokens: tokens as f64 / n as f64,
                    mean_latency_s: latency / n as f64,
                    tokens_per_s: (latency > 0.0).then(|| tokens as f64 / latency),
                }
            })
            .collect();
        let find = |name: &str| configs.iter().position(|c| c.label == name);
        let mut pairs = vec![];
        if let (Some(a), Some(b)) = (find(ADAPTER), find(BASE)) {
            pairs.push((a, b));
        }
        if let Some(a) = find(ADAPTER) {
            pairs.extend(
                (0..configs.len())
                    .filter(|&c| matches!(configs[c].strategy, Strategy::Cold { .. }))
                    .map(|c| (c, a)),
            );
        }
        let mut paired = vec![];
        for (x, y) in pairs {
            for metric in ["strict", "flexible"] {
                let right = |r: &Record| match metric {
                    "strict" => r.correct_strict,
                    _ => r.correct_flexible,
                };
                let only = |a: usize, b: usize| {
                    (0..n)
                        .filter(|&p| right(&results[a][p]) && !right(&results[b][p]))
                        .count()
                };
                let (only_first, only_second) = (only(x, y), only(y, x));
                paired.push(Paired {
                    first: configs[x].label.clone(),
                    second: configs[y].label.clone(),
                    metric,
                    only_first,
                    only_second,
                    points: 100.0 * (only_first as f64 - only_second as f64) / n as f64,
                    mcnemar_p: stats::mcnemar_exact(only_first, only_second),
                });
            }
        }
        Summary {
            problems: n,
            decodings,
            paired,
        }
    }

    /// The accuracy table (with 95% Wilson intervals) and the strict paired tests.
    fn print(&self) {
        println!(
            "{:<24} {:>22} {:>22} {:>9} {:>10} {:>9}",
            "decoding",
            "strict % (95% CI)",
            "flexible % (95% CI)",
            "mean len",
            "latency s",
            "tokens/s"
        );
        for d in &self.decodings {
            println!(
                "{:<24} {:>22} {:>22} {:>9.1} {:>10.2} {:>9}",
                d.config,
                d.strict.cell(),
                d.flexible.cell(),
                d.mean_tokens,
                d.mean_latency_s,
                d.tokens_per_s.map_or("-".into(), |t| format!("{t:.1}"))
            );
        }
        let strict: Vec<&Paired> = self
            .paired
            .iter()
            .filter(|p| p.metric == "strict")
            .collect();
        if strict.is_empty() {
            return;
        }
        println!("paired on the same problems (strict; exact McNemar test, two-sided):");
        for p in strict {
            println!(
                "  {} vs {}: {:+.1} points ({} right only with the first, {} only with the second), p = {}",
                p.first,
                p.second,
                p.points,
                p.only_first,
                p.only_second,
                stats::format_p(p.mcnemar_p)
            );
        }
    }
}

const BASE: &str = "greedy (base)";
const ADAPTER: &str = "greedy (adapter)";
