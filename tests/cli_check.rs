//! `ascend-cold check` and `ascend-cold devices` on the emulator.

use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ascend-cold"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout_ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {text}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn check_every_kernel_default_and_random_tilings() {
    for kernel in ["bgmv-shrink", "bgmv-expand", "cold-score"] {
        for tiling in ["default", "random"] {
            let text = stdout_ok(&cli(&[
                "check", kernel, "--device", "emu", "--trials", "3", "--seed", "42", "--tiling",
                tiling,
            ]));
            assert!(
                text.contains("max abs") && text.contains("max rel") && text.contains("tol"),
                "{text}"
            );
            assert!(text.contains("all 3 trial(s) within tolerance"), "{text}");
        }
    }
}

#[test]
fn check_takes_a_fixed_shape_and_rejects_bad_ones() {
    let text = stdout_ok(&cli(&[
        "check",
        "cold-score",
        "--device",
        "emu",
        "--shape",
        "n=2,v=151936",
        "--trials",
        "1",
        "--dtype",
        "f16",
        "--scores",
        "true",
    ]));
    assert!(
        text.contains("n=2,v=151936") && text.contains("scores true"),
        "{text}"
    );
    let out = cli(&[
        "check",
        "bgmv-shrink",
        "--device",
        "emu",
        "--shape",
        "b=2,h=64",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("a value for r"),
        "{err}"
    );
    let out = cli(&[
        "check",
        "bgmv-shrink",
        "--device",
        "emu",
        "--dtype",
        "f32",
        "--trials",
        "1",
    ]);
    assert!(!out.status.success());
}

#[test]
fn devices_lists_the_emulator_says_why_no_npu_and_self_checks() {
    let text = stdout_ok(&cli(&["devices"]));
    assert!(
        text.contains("emu:0") && text.contains("vector cores"),
        "{text}"
    );
    assert!(text.contains("--device auto picks"), "{text}");
    if !text.contains("npu:0") {
        // No NPU here: the reason names the library paths tried (or the device that did not answer).
        assert!(
            text.contains("libascendcl.so")
                && (text.contains("tried") || text.contains("no device answered")),
            "{text}"
        );
    }
    assert!(
        text.contains("self-check emu:0:") && text.contains("cold_score f32 ok"),
        "{text}"
    );
    let text = stdout_ok(&cli(&["devices", "--no-check"]));
    assert!(!text.contains("self-check"), "{text}");
}

/// A zero extent and a shape whose trial the host cannot hold are refused before anything runs.
#[test]
fn zero_and_oversized_shapes_are_refused_with_the_figure() {
    for (kernel, shape, says) in [
        ("bgmv-shrink", "b=0,h=64,r=8,l=2", "b at least 1"),
        ("bgmv-expand", "b=4,r=8,h=0,l=2", "h at least 1"),
        ("cold-score", "n=0,v=10", "n at least 1"),
        ("cold-score", "n=100000,v=100000", "MiB of host memory"),
    ] {
        let out = cli(&[
            "check", kernel, "--device", "emu", "--shape", shape, "--trials", "1",
        ]);
        let message = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{shape}: {message}");
        assert!(
            message.contains("--shape") && message.contains(says),
            "{shape}: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
    }
}
