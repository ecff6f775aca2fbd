//! `ascend-cold selftest`: passes on the emulator, says why when the NPU it is asked for has no
//! runtime, fails (exit 1, in the summary) when a check fails, and decodes SmolLM2 when it is present.

mod gguf_util;

use std::process::{Command, Output};

fn selftest(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ascend-cold"));
    cmd.arg("selftest").args(args);
    cmd
}

fn run(mut cmd: Command) -> (Output, String, String) {
    let out = cmd.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn selftest_on_the_emulator_passes_every_kernel() {
    let (out, text, err) = run(selftest(&["--device", "emu"]));
    assert_eq!(out.status.code(), Some(0), "{text}\nstderr: {err}");
    for op in ["bgmv_shrink", "bgmv_expand", "cold_score"] {
        let checked: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with(op) && l.contains("max abs"))
            .collect();
        assert!(checked.len() >= 3, "{op}: {text}");
        assert!(checked.iter().all(|l| l.ends_with(" ok")), "{op}: {text}");
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(op) && l.contains("median")),
            "{op} timing: {text}"
        );
    }
    for dtype in [" f16 ", " bf16 ", " f32 "] {
        assert!(text.contains(dtype), "{dtype}: {text}");
    }
    assert!(text.contains("HOST times"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
    assert!(
        text.contains("ascend-cold selftest summary")
            && text.contains(&format!("ascend-cold {}", env!("CARGO_PKG_VERSION")))
            && text.contains("device         emu:0")
            && text.contains(" passed, 0 failed")
            && text.contains("first failure  none")
            && text.contains("result         PASS"),
        "{text}"
    );
}

#[test]
fn selftest_on_a_missing_npu_says_why() {
    const LIB: &str = "/nonexistent/ascend-cold-test/libascendcl.so";
    let mut cmd = selftest(&["--device", "npu:7"]);
    cmd.env("ASCEND_ACL_LIB", LIB)
        .env_remove("ASCEND_HOME_PATH")
        .env_remove("ASCEND_TOOLKIT_HOME");
    let (out, text, err) = run(cmd);
    assert!(!out.status.success(), "{text}\nstderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    if text.contains("AscendCL could not be loaded") {
        assert!(text.contains(LIB) && text.contains("remedy"), "{text}");
        assert!(err.contains(LIB) && err.contains("remedy"), "{err}");
    } else {
        // A machine with CANN in its default place: the library loads and there is no NPU 7.
        assert!(err.contains("device id"), "{err}");
    }
}

#[test]
fn a_failed_check_fails_the_selftest_and_leads_the_summary() {
    let (out, text, err) = run(selftest(&[
        "--device",
        "emu",
        "--model",
        "/nonexistent/ascend-cold-test/model.gguf",
    ]));
    assert_eq!(out.status.code(), Some(1), "{text}\nstderr: {err}");
    assert!(
        text.contains(" passed, 1 failed")
            && text.contains("first failure  model /nonexistent/ascend-cold-test/model.gguf")
            && text.contains("result         FAIL"),
        "{text}"
    );
}

#[test]
fn selftest_decodes_smollm2() {
    let Some(model) = gguf_util::smollm2_path() else {
        eprintln!(
            "skipped: SmolLM2-135M-Instruct GGUF not found (run scripts/fetch-smollm2 or set ASCEND_COLD_SMOLLM2)"
        );
        return;
    };
    let model = model.display().to_string();
    let (out, text, err) = run(selftest(&["--device", "emu", "--model", &model]));
    assert_eq!(out.status.code(), Some(0), "{text}\nstderr: {err}");
    assert!(
        text.contains("8 greedy tokens")
            && text.contains("picks by cold_score on emu:0 equal the host argmax")
            && text.contains("result         PASS"),
        "{text}"
    );
}
