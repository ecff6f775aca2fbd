//! `ascend-cold decode --requests` as a user runs it (docs/DECODING.md, "Admission", "Output as
//! requests finish"): results written as each request finishes, Ctrl-C keeping them, many requests
//! within an address-space limit, limits refused with their figures.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny-gqa-tied/model")
        .to_str()
        .unwrap()
        .to_string()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ascend-cold")
}

/// A requests file of `lines`, in a fresh temporary folder (kept alive by the returned handle).
fn requests_file(lines: &[Value]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn decode(extra: &[&str]) -> std::process::Output {
    let model = model();
    let mut args = vec!["decode", "--device", "emu", "--model", &model];
    args.extend(extra);
    Command::new(bin()).args(&args).output().unwrap()
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tokens(v: &Value) -> Vec<u64> {
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// Random prompts of `len` token ids below the fixture's vocabulary (384).
fn random_prompts(n: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..len).map(|_| rng.gen_range(0..384)).collect())
        .collect()
}

#[test]
fn json_lines_come_in_order_of_completion_with_their_index_and_each_requests_own_tokens() {
    // Longest first: under 2 rows a step, the later, shorter requests finish first.
    let prompts = random_prompts(6, 5, 7);
    let lines: Vec<Value> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({"prompt_ids": p, "max_new_tokens": 12 - 2 * i, "ignore_eos": true})
        })
        .collect();
    let (_dir, path) = requests_file(&lines);
    let out = decode(&[
        "--requests",
        path.to_str().unwrap(),
        "--json",
        "--max-batch-rows",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = json_lines(&out.stdout);
    let order: Vec<u64> = got.iter().map(|v| v["index"].as_u64().unwrap()).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..6).collect::<Vec<_>>(), "every request once");
    assert_ne!(order, sorted, "written as they finish, not in file order");
    for v in &got {
        let i = v["index"].as_u64().unwrap() as usize;
        assert_eq!(v["line"].as_u64(), Some(i as u64 + 1));
        // The oracle: the same request alone on the command line.
        let ids: Vec<String> = prompts[i].iter().map(u32::to_string).collect();
        let max_new = (12 - 2 * i).to_string();
        let alone = decode(&[
            "--prompt-ids",
            &ids.join(","),
            "--max-new-tokens",
            &max_new,
            "--ignore-eos",
            "--json",
        ]);
        assert!(alone.status.success());
        assert_eq!(
            tokens(v),
            tokens(&json_lines(&alone.stdout)[0]),
            "request {i}"
        );
        assert_eq!(tokens(v).len(), 12 - 2 * i);
    }
}

#[test]
fn sigint_keeps_every_finished_line_and_exits_130() {
    // A quick request, then many long ones, one at a time: the first line comes out long before
    // the end.
    let mut lines = vec![serde_json::json!({"prompt_ids": [3, 4, 5], "max_new_tokens": 1})];
    for p in random_prompts(2000, 4, 11) {
        lines.push(serde_json::json!({"prompt_ids": p, "max_new_tokens": 200, "ignore_eos": true}));
    }
    let (_dir, path) = requests_file(&lines);
    let model = model();
    let mut child = Command::new(bin())
        .args([
            "decode",
            "--device",
            "emu",
            "--model",
            &model,
            "--requests",
            path.to_str().unwrap(),
            "--json",
            "--max-batch-rows",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["index"], 0);
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let later = json_lines(rest.as_bytes());
    assert!(later.len() + 1 < lines.len(), "stopped early");
    for (k, v) in later.iter().enumerate() {
        // Complete results, in order (one row at a time).
        assert_eq!(v["index"].as_u64(), Some(k as u64 + 1));
        assert_eq!(tokens(v).len(), 200);
    }
    assert!(
        stderr.contains(&format!(
            "{} of {} requests finished",
            later.len() + 1,
            lines.len()
        )),
        "{stderr}"
    );
}

/// 3,000 requests of 64-token prompts under `ulimit -v` 300 MB: with the default limits they finish
/// (about 80 MB resident); with admission lifted, the one 3,000-row batch needs about 800 MB and
/// the same run fails. Threads and malloc arenas (address space the limit counts) are pinned, so the
/// bound does not depend on the machine's core count.
#[test]
fn many_requests_finish_under_an_address_space_limit_that_one_batch_of_them_exceeds() {
    let n = 3000;
    let lines: Vec<Value> = random_prompts(n, 64, 3)
        .into_iter()
        .map(|p| serde_json::json!({"prompt_ids": p, "max_new_tokens": 2, "ignore_eos": true}))
        .collect();
    let (_dir, path) = requests_file(&lines);
    let model = model();
    let run = |extra: &str| {
        Command::new("sh")
            .args([
                "-c",
                &format!(
                    "ulimit -v 300000 && exec \"$0\" decode --device emu --model \"$1\" \
                     --requests \"$2\" --json {extra}"
                ),
                bin(),
                &model,
                path.to_str().unwrap(),
            ])
            .env("RAYON_NUM_THREADS", "2")
            .env("MALLOC_ARENA_MAX", "2")
            .output()
            .unwrap()
    };
    let bounded = run("");
    assert!(
        bounded.status.success(),
        "{}",
        String::from_utf8_lossy(&bounded.stderr)
    );
    let got = json_lines(&bounded.stdout);
    assert_eq!(got.len(), n);
    assert!(got.iter().all(|v| tokens(v).len() == 2));
    let unbounded = run("--max-batch-rows 1000000 --max-kv-mib 1000000");
    assert!(
        !unbounded.status.success(),
        "the test's limit does not bind: one batch of {n} fit too"
    );
}

#[test]
fn a_request_above_the_kv_limit_is_refused_with_its_line_need_and_the_limit() {
    let lines = [
        serde_json::json!({"prompt_ids": [1, 2, 3], "max_new_tokens": 5}),
        serde_json::json!({"prompt_ids": [1, 2, 3, 4], "max_new_tokens": 5}),
    ];
    let (_dir, path) = requests_file(&lines);
    // The fixture: 2 layers x 2 (K, V) x 2 KV heads x 16 dims x 4 bytes = 512 bytes a position.
    let need = 512 * (3 + 5);
    let out = decode(&["--requests", path.to_str().unwrap(), "--max-kv-mib", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    for want in [
        "line 1".to_string(),
        format!("{need} bytes"),
        "got 0 bytes".to_string(),
    ] {
        assert!(err.contains(&want), "{want:?} not in {err}");
    }
    let out = decode(&[
        "--requests",
        path.to_str().unwrap(),
        "--max-batch-rows",
        "0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--max-batch-rows"), "{err}");
}

#[test]
fn a_bad_request_line_is_reported_with_its_number_and_member_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    std::fs::write(
        &path,
        "{\"prompt_ids\": [1, 2]}\n\n{\"prompt_ids\": [1, -2]}\n",
    )
    .unwrap();
    let missing = dir.path().join("no-model-here");
    let out = Command::new(bin())
        .args(["decode", "--device", "emu", "--model"])
        .arg(&missing)
        .arg("--requests")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("requests.jsonl") && err.contains("line 3: prompt_ids[1]"),
        "{err}"
    );
}

/// `--help` prints the KV budget derived from the machine: a quarter of what the process may use,
/// which under `ulimit -v 400000` (KiB) is at most 400,000 x 1,024 / 4 bytes = 97 MiB (exactly that
/// when MemAvailable is larger, as on any machine that builds this project).
#[test]
fn the_default_kv_budget_is_a_quarter_of_the_address_space_limit_when_that_is_lower() {
    let out = Command::new("sh")
        .args(["-c", "ulimit -v 400000 && exec \"$0\" decode --help", bin()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let after = &help[help.find("--max-kv-mib <").unwrap()..];
    let default: usize = after[after.find("[default: ").unwrap() + 10..]
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let limit_mib = (400_000 * 1024 / 4) >> 20;
    let available = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .unwrap();
    if available > 400_000 {
        assert_eq!(default, limit_mib, "{help}");
    } else {
        assert!(default <= limit_mib, "{help}");
    }
}
