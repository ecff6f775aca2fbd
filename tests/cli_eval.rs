//! `ascend-cold eval` keeps its results (docs/EVAL.md): an interrupted run (a real SIGINT, or the
//! hidden `--stop-after`) keeps every finished decoding in `--out`, and `--resume` completes it with
//! the records and the table of an uninterrupted run; a non-empty `--out` needs `--resume`; a file
//! another run holds is refused; an output that is an input is refused; a line cut short by a kill
//! is decoded again; `--regrade` grades recorded texts with the shared answer parser, and
//! `--summary` carries the table's numbers.
//!
//! The model is the tiny fixture (tests/fixtures/tiny-gqa-tied) with a one-line chat template, so
//! a run of 180 decodings takes seconds. Its replies are noise, so the accuracy checks use texts
//! written into the records (`--regrade`).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PROBLEMS: usize = 60;
const DECODINGS: usize = 3 * PROBLEMS;

/// The fixture model with a chat template, a task of `PROBLEMS` problems, in a directory that
/// lives as long as the test binary.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn get() -> &'static Setup {
        static SETUP: OnceLock<Setup> = OnceLock::new();
        SETUP.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gqa-tied");
            let model = dir.path().join("model");
            std::fs::create_dir(&model).unwrap();
            for f in std::fs::read_dir(fixture.join("model")).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, model.join(f.file_name().unwrap())).unwrap();
            }
            std::fs::write(
                model.join("chat_template.jinja"),
                "{% for m in messages %}{{ m['content'] }}{% endfor %}",
            )
            .unwrap();
            let task: String = (0..PROBLEMS)
                .map(|i| {
                    serde_json::json!({"id": format!("p{i:03}"), "prompt": format!("What is {i} and {i}?"),
                        "answer": answer(i), "split": "dev"})
                    .to_string()
                        + "\n"
                })
                .collect();
            std::fs::write(dir.path().join("task.jsonl"), task).unwrap();
            Setup { dir }
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `eval` on the task with the fixture adapter and `extra` arguments.
    fn command(&self, extra: &[&str]) -> Command {
        let adapter = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-gqa-tied/adapters/a-qv");
        let mut c = Command::new(env!("CARGO_BIN_EXE_ascend-cold"));
        c.arg("eval")
            .arg("--task")
            .arg(self.path("task.jsonl"))
            .arg("--model")
            .arg(self.path("model"))
            .arg("--adapter")
            .arg(format!("a={}", adapter.display()))
            .args(["--device", "emu", "--max-new-tokens", "32", "--batch", "1"])
            .args(extra);
        c
    }

    fn eval(&self, extra: &[&str]) -> Output {
        self.command(extra).output().expect("the binary runs")
    }

    /// An uninterrupted run: its records and its table.
    fn straight() -> &'static (Records, Vec<String>) {
        static STRAIGHT: OnceLock<(Records, Vec<String>)> = OnceLock::new();
        STRAIGHT.get_or_init(|| {
            let s = Setup::get();
            let out = s.path("straight.jsonl");
            let o = s.eval(&["--out", out.to_str().unwrap()]);
            ok(&o);
            let records = records(&out);
            assert_eq!(records.len(), DECODINGS);
            (records, table(&o))
        })
    }
}

/// Problem i's answer: integers with thousands, negative integers, decimals (see the regrade test).
fn answer(i: usize) -> String {
    match i % 6 {
        4 => format!("-{i}"),
        5 => format!("{i}.5"),
        _ => (1001 * i).to_string(),
    }
}

/// `n` with thousands separators.
fn with_commas(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, d) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Records by (problem, decoding), without the one field that differs between runs (latency).
type Records = BTreeMap<(String, String), Value>;

fn records(path: &Path) -> Records {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "a torn last line");
    let mut out = Records::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).expect("every line is a whole record");
        v.as_object_mut().unwrap().remove("latency_s");
        let key = (
            v["id"].as_str().unwrap().to_string(),
            v["config"].as_str().unwrap().to_string(),
        );
        assert!(out.insert(key, v).is_none(), "a record written twice");
    }
    out
}

/// The printed table without its timing columns (latency, tokens/s: a property of the run, not of
/// the results), and without the line about this run's decoding time.
fn table(o: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("decoding "))
        .collect();
    assert!(!lines.is_empty(), "no table in {stdout}");
    lines
        .iter()
        .map(|l| match l.starts_with(' ') || l.starts_with("paired") {
            true => l.to_string(),
            // decoding (24) + strict (1 + 22) + flexible (1 + 22) + mean len (1 + 9).
            false => l.chars().take(80).collect(),
        })
        .collect()
}

/// Every recorded line equals the straight run's, and nothing is recorded twice.
fn assert_subset_of_straight(got: &Records) {
    let (straight, _) = Setup::straight();
    for (key, v) in got {
        assert_eq!(
            Some(v),
            straight.get(key),
            "{key:?} differs from the straight run"
        );
    }
}

#[test]
fn sigint_keeps_every_finished_decoding_and_resume_completes_the_table() {
    let s = Setup::get();
    let (straight, straight_table) = Setup::straight();
    let out = s.path("sigint.jsonl");
    let child = s
        .command(&["--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Signal as soon as the first decoding is on disk: the run has most of its work ahead.
    let t = Instant::now();
    while std::fs::read(&out).map_or(true, |b| !b.contains(&b'\n')) {
        assert!(t.elapsed() < Duration::from_secs(120), "no record in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) takes plain integers; `pid` is our child, not yet waited for, so the id
    // still names it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "the run finished before SIGINT arrived, or failed: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let kept = records(&out);
    assert!(
        !kept.is_empty() && kept.len() < DECODINGS,
        "{} kept",
        kept.len()
    );
    assert_subset_of_straight(&kept);
    eprintln!("SIGINT: {} of {DECODINGS} decodings kept", kept.len());
    let o = s.eval(&["--out", out.to_str().unwrap(), "--resume"]);
    ok(&o);
    assert_eq!(&records(&out), straight);
    assert_eq!(&table(&o), straight_table);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("{} decodings run", DECODINGS - kept.len())),
        "resume redid finished work: {stdout}"
    );
}

#[test]
fn stop_after_then_resume_equals_a_straight_run() {
    let s = Setup::get();
    let (straight, straight_table) = Setup::straight();
    let out = s.path("stopped.jsonl");
    let o = s.eval(&["--out", out.to_str().unwrap(), "--stop-after", "7"]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let kept = records(&out);
    // It stops after the step that finished the 7th: with batch 1 that is 7 to 9 decodings.
    assert!((7..=9).contains(&kept.len()), "{} kept", kept.len());
    assert_subset_of_straight(&kept);
    // Stopped again part-way, then finished: twice interrupted is still the same table.
    let o = s.eval(&[
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--stop-after",
        "50",
    ]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert_subset_of_straight(&records(&out));
    let o = s.eval(&["--out", out.to_str().unwrap(), "--resume"]);
    ok(&o);
    assert_eq!(&records(&out), straight);
    assert_eq!(&table(&o), straight_table);
    // A finished run resumed: nothing to decode, the same table.
    let o = s.eval(&["--out", out.to_str().unwrap(), "--resume"]);
    ok(&o);
    assert_eq!(&table(&o), straight_table);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 decodings run"));
}

#[test]
fn a_line_cut_short_by_a_kill_is_decoded_again() {
    let s = Setup::get();
    let (straight, straight_table) = Setup::straight();
    let out = s.path("torn.jsonl");
    let text = std::fs::read_to_string(s.path("straight.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().take(20).collect();
    let mut torn = lines[..19].join("\n") + "\n";
    torn.push_str(&lines[19][..lines[19].len() / 2]);
    std::fs::write(&out, torn).unwrap();
    let o = s.eval(&["--out", out.to_str().unwrap(), "--resume"]);
    ok(&o);
    assert!(
        stderr(&o).contains("unfinished last line"),
        "{}",
        stderr(&o)
    );
    assert_eq!(&records(&out), straight);
    assert_eq!(&table(&o), straight_table);
}

#[test]
fn a_non_empty_out_needs_resume_and_is_left_as_it_was() {
    let s = Setup::get();
    let out = s.path("existing.jsonl");
    Setup::straight();
    std::fs::copy(s.path("straight.jsonl"), &out).unwrap();
    let before = std::fs::read(&out).unwrap();
    let o = s.eval(&["--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("--resume") && e.contains("existing.jsonl"),
        "{e}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn a_second_run_on_one_out_is_refused() {
    let s = Setup::get();
    let out = s.path("locked.jsonl");
    // What a running eval holds: the file, locked.
    let held = ascend_cold::outfile::open_locked(&out).unwrap();
    let o = s.eval(&["--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("locked.jsonl") && e.contains("in use by another ascend-cold run"),
        "{e}"
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        0,
        "the refused run wrote"
    );
    drop(held);
}

#[test]
fn an_output_that_is_an_input_is_refused_naming_both_flags() {
    let s = Setup::get();
    let task = s.path("task.jsonl");
    let before = std::fs::read(&task).unwrap();
    let via_dotdot = s.path("model/../task.jsonl");
    for (args, flags) in [
        (
            vec!["--out", via_dotdot.to_str().unwrap()],
            ["--out", "--task"],
        ),
        (
            vec!["--summary", task.to_str().unwrap()],
            ["--summary", "--task"],
        ),
    ] {
        let o = s.eval(&args);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(e.contains(flags[0]) && e.contains(flags[1]), "{e}");
    }
    let same = s.path("both.jsonl");
    let o = s.eval(&[
        "--out",
        same.to_str().unwrap(),
        "--summary",
        same.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert!(e.contains("--out") && e.contains("--summary"), "{e}");
    assert_eq!(std::fs::read(&task).unwrap(), before);
    assert!(!same.exists());
}

#[test]
fn resuming_with_other_decodings_is_refused() {
    let s = Setup::get();
    Setup::straight();
    let out = s.path("other-configs.jsonl");
    std::fs::copy(s.path("straight.jsonl"), &out).unwrap();
    let o = s.eval(&["--out", out.to_str().unwrap(), "--resume", "--beta", "0.75"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("CoLD a=0.1 b=0.5") && e.contains("--beta"),
        "{e}"
    );
}

#[test]
fn a_decoding_given_twice_or_a_missing_file_to_regrade_is_refused() {
    let s = Setup::get();
    let out = s.path("twice.jsonl");
    let o = s.eval(&["--out", out.to_str().unwrap(), "--alpha", "0.1,0.1"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("CoLD a=0.1 b=0.5 twice"), "{e}");
    let missing = s.path("never-written.jsonl");
    let o = s.eval(&["--out", missing.to_str().unwrap(), "--regrade"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("never-written.jsonl"), "{}", stderr(&o));
    assert!(!missing.exists());
}

/// Wilson's 95% interval, written out independently of stats.rs (Wilson 1927).
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let centre = p + z * z / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    let d = 1.0 + z * z / n;
    ((centre - half) / d, (centre + half) / d)
}

#[test]
fn regrade_reads_recorded_texts_with_the_shared_parser_and_the_summary_has_the_table() {
    let s = Setup::get();
    Setup::straight();
    let out = s.path("regrade.jsonl");
    let summary = s.path("regrade.summary.json");
    // Replies written so that the rules decide: the answer is 2i.
    let text = std::fs::read_to_string(s.path("straight.jsonl")).unwrap();
    let mut expected = BTreeMap::<String, (usize, usize)>::new();
    let mut lines = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let i: usize = v["id"].as_str().unwrap()[1..].parse().unwrap();
        let config = v["config"].as_str().unwrap().to_string();
        let want = answer(i);
        let (reply, strict, flexible) = match (i % 6, config.as_str()) {
            // Thousands separators, a dollar sign and zero cents: "$1,001.00" is 1001.
            (0, _) => (
                format!("so #### ${}.00 dollars", with_commas(1001 * i)),
                true,
                true,
            ),
            // The first marker with a number counts, not the last; a heading is no marker.
            (1, "greedy (base)") => (format!("#### Step 1\n#### {want}\n#### 999"), true, true),
            (1, _) => (format!("#### 999\n#### {want}"), false, false),
            // No marker: only the flexible reading finds it.
            (2, _) => (format!("It is {want}."), false, true),
            // A fraction is not the integer before its slash.
            (3, _) => (format!("#### {want}/2"), false, false),
            // A negative answer.
            (4, _) => (format!("#### {want}"), true, true),
            // "4.50" is 4.5; what follows the number does not count.
            _ => (format!("#### {want}0, since 1,000 is more"), true, true),
        };
        v["text"] = reply.into();
        // Stale grades, as an older parser might have left them.
        v["correct_strict"] = (!strict).into();
        v.as_object_mut().unwrap().remove("parsed_strict");
        let e = expected.entry(config).or_default();
        e.0 += usize::from(strict);
        e.1 += usize::from(flexible);
        lines.push_str(&(v.to_string() + "\n"));
    }
    std::fs::write(&out, lines).unwrap();
    // Stale grades are not trusted when resuming.
    let o = s.eval(&["--out", out.to_str().unwrap(), "--resume"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--regrade"), "{}", stderr(&o));
    // Re-grading needs no model.
    let o = Command::new(env!("CARGO_BIN_EXE_ascend-cold"))
        .arg("eval")
        .arg("--task")
        .arg(s.path("task.jsonl"))
        .arg("--out")
        .arg(&out)
        .arg("--summary")
        .arg(&summary)
        .arg("--regrade")
        .output()
        .unwrap();
    ok(&o);
    for v in records(&out).values() {
        let i: usize = v["id"].as_str().unwrap()[1..].parse().unwrap();
        let parsed = v["parsed_strict"].as_str().map(str::to_string);
        let strict = v["correct_strict"].as_bool().unwrap();
        assert_eq!(strict, parsed == Some(answer(i)), "{v}");
    }
    // Now consistent: a resume accepts the file (and has nothing to do).
    let o = s.eval(&["--out", out.to_str().unwrap(), "--resume"]);
    ok(&o);
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(summary["problems"], PROBLEMS);
    let n = PROBLEMS as f64;
    for d in summary["decodings"].as_array().unwrap() {
        let (strict, flexible) = expected[d["config"].as_str().unwrap()];
        for (metric, k) in [("strict", strict), ("flexible", flexible)] {
            assert_eq!(d[metric]["correct"], k, "{d}");
            let (lo, hi) = wilson(k as f64, n);
            let got = &d[metric]["wilson95"];
            assert!((got[0].as_f64().unwrap() - lo).abs() < 1e-12, "{d}");
            assert!((got[1].as_f64().unwrap() - hi).abs() < 1e-12, "{d}");
        }
    }
    // Base vs adapter, strict: the base alone is right on the i % 6 == 1 problems (10 of 60), the
    // adapter never alone: exact McNemar p = 2 / 2^10.
    let pair = summary["paired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metric"] == "strict" && p["second"] == "greedy (base)")
        .unwrap();
    assert_eq!(
        (&pair["only_first"], &pair["only_second"]),
        (&0.into(), &10.into())
    );
    assert!((pair["mcnemar_p"].as_f64().unwrap() - 2.0 / 1024.0).abs() < 1e-15);
}
