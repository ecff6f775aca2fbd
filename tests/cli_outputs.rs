//! Whole-file outputs of `run` and `tune` (docs/EVAL.md, "Results are never lost"): written to a
//! temporary file and renamed (an existing output is replaced by a new file, never rewritten in
//! place, and nothing temporary is left), and an output that is also an input, or another output,
//! of the same run is refused with both flags named and every file left as it was.

use ascend_cold::npy::{NpyArray, NpyDtype};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ascend-cold"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory with expert and base logits [2, 8] for cold-score.
fn logits() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let values = |seed: f32| -> Vec<f32> { (0..16).map(|i| (i as f32 * seed).sin()).collect() };
    let expert = dir.path().join("expert.npy");
    let base = dir.path().join("base.npy");
    NpyArray::from_values(NpyDtype::F32, vec![2, 8], &values(0.7))
        .unwrap()
        .write(&expert)
        .unwrap();
    NpyArray::from_values(NpyDtype::F32, vec![2, 8], &values(1.3))
        .unwrap()
        .write(&base)
        .unwrap();
    (dir, expert, base)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn run_replaces_an_existing_output_by_a_new_file_and_leaves_no_temporary() {
    let (dir, expert, base) = logits();
    let out = dir.path().join("tokens.npy");
    let stats = dir.path().join("stats.json");
    std::fs::write(&out, b"an older result").unwrap();
    std::fs::write(&stats, b"{}").unwrap();
    let (out_inode, stats_inode) = (
        std::fs::metadata(&out).unwrap().ino(),
        std::fs::metadata(&stats).unwrap().ino(),
    );
    let o = cli(&[
        "run",
        "cold-score",
        "--device",
        "emu",
        "--expert",
        s(&expert),
        "--base",
        s(&base),
        "--out",
        s(&out),
        "--stats-json",
        s(&stats),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Renamed into place: a new inode, with the whole new contents.
    assert_ne!(std::fs::metadata(&out).unwrap().ino(), out_inode);
    assert_ne!(std::fs::metadata(&stats).unwrap().ino(), stats_inode);
    let tokens = NpyArray::read(&out).unwrap();
    assert_eq!(tokens.shape, vec![2]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert!(v["median_ms"].is_number(), "{v}");
    assert_eq!(
        names(dir.path()),
        ["base.npy", "expert.npy", "stats.json", "tokens.npy"]
    );
}

#[test]
fn run_refuses_an_output_that_is_an_input_or_another_output() {
    let (dir, expert, base) = logits();
    let before = std::fs::read(&expert).unwrap();
    let tokens = dir.path().join("tokens.npy");
    // The same file under another spelling.
    let expert_again = dir.path().join(".").join("expert.npy");
    for (extra, flags) in [
        (vec!["--out", s(&expert_again)], ["--out", "--expert"]),
        (
            vec!["--out", s(&tokens), "--scores-out", s(&base)],
            ["--scores-out", "--base"],
        ),
        (
            vec!["--out", s(&tokens), "--scores-out", s(&tokens)],
            ["--out", "--scores-out"],
        ),
        (
            vec!["--out", s(&tokens), "--stats-json", s(&expert)],
            ["--stats-json", "--expert"],
        ),
        (
            vec!["--out", s(&tokens), "--tiling", s(&tokens)],
            ["--out", "--tiling"],
        ),
    ] {
        let mut args = vec![
            "run",
            "cold-score",
            "--device",
            "emu",
            "--expert",
            s(&expert),
            "--base",
            s(&base),
        ];
        args.extend(extra);
        let o = cli(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains(flags[0]) && e.contains(flags[1]),
            "{args:?}: {e}"
        );
    }
    assert_eq!(std::fs::read(&expert).unwrap(), before);
    assert_eq!(names(dir.path()), ["base.npy", "expert.npy"]);
}

#[test]
fn tune_refuses_one_file_for_out_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.json");
    let o = cli(&[
        "tune",
        "cold-score",
        "--device",
        "emu",
        "--shape",
        "n=1,v=64",
        "--out",
        s(&f),
        "--json",
        s(&f),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("--out") && e.contains("--json"), "{e}");
    assert!(!f.exists());
}
