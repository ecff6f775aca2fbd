//! `ascend-cold tune`: it never proposes an invalid tiling (property test over shapes, on the search
//! space and through the binary), and for every benched shape it finds a tiling at least as good, by its
//! own measure, as the default; the tiling it writes is accepted by `run --tiling`, `check --tiling`
//! and `serde_json` into the tiling struct (what the benches do).

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::tiling::{
    bench_shapes, BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType,
};
use ascend_cold::Device;
use ascend_cold::DeviceProfile;
use proptest::prelude::*;
use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ascend-cold"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {text}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn emu_profile() -> DeviceProfile {
    Device::emulator().unwrap().profile().unwrap()
}

/// Runs `tune` with `--json` and `--out`; returns (default cost, best cost, best tiling JSON text).
fn tune(dir: &Path, kernel: &str, shape: &str, extra: &[&str]) -> (f64, f64, String) {
    let (json, out) = (dir.join("tune.json"), dir.join("best.json"));
    let mut args = vec![
        "tune",
        kernel,
        "--device",
        "emu",
        "--shape",
        shape,
        "--json",
        json.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let text = ok(&cli(&args));
    assert!(
        text.contains("COST MODEL"),
        "the emulator's ranking says it is a model: {text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        v["default"]["ok"].as_bool().unwrap(),
        "the default agrees with the reference"
    );
    let best = std::fs::read_to_string(&out).unwrap();
    (
        v["default"]["cost"].as_f64().unwrap(),
        v["best"]["cost"].as_f64().unwrap(),
        best,
    )
}

fn shrink_spec(s: &ShrinkShape) -> String {
    format!(
        "b={},h={},r={},l={}",
        s.batch, s.hidden_in, s.rank, s.num_loras
    )
}
fn expand_spec(s: &ExpandShape) -> String {
    format!(
        "b={},r={},h={},full={},off={},l={}",
        s.batch, s.rank, s.hidden_out, s.hidden_full, s.slice_offset, s.num_loras
    )
}
fn cold_spec(s: &ColdShape) -> String {
    format!("n={},v={}", s.rows, s.vocab)
}

fn check_shrink(dir: &Path, s: ShrinkShape) {
    let (default, best, text) = tune(dir, "bgmv-shrink", &shrink_spec(&s), &[]);
    assert!(best <= default, "{s:?}: best {best} > default {default}");
    let t: BgmvShrinkTiling = serde_json::from_str(&text).unwrap();
    t.validate(s, DType::F16, &emu_profile()).unwrap();
}

fn check_expand(dir: &Path, s: ExpandShape) {
    let (default, best, text) = tune(dir, "bgmv-expand", &expand_spec(&s), &[]);
    assert!(best <= default, "{s:?}: best {best} > default {default}");
    let t: BgmvExpandTiling = serde_json::from_str(&text).unwrap();
    t.validate(s, DType::F16, &emu_profile()).unwrap();
}

fn check_cold(dir: &Path, s: ColdShape, dtype: &str, scores: bool) {
    let mut extra = vec!["--dtype", dtype];
    if scores {
        extra.push("--scores");
    }
    let (default, best, text) = tune(dir, "cold-score", &cold_spec(&s), &extra);
    assert!(best <= default, "{s:?}: best {best} > default {default}");
    let t: ColdScoreTiling = serde_json::from_str(&text).unwrap();
    let dt = match dtype {
        "f16" => DType::F16,
        "bf16" => DType::Bf16,
        _ => DType::F32,
    };
    t.validate(
        s.rows,
        s.vocab,
        dt,
        ColdParams::new(0.1, 0.5).unwrap(),
        &emu_profile(),
    )
    .unwrap();
}

#[test]
fn tune_beats_or_matches_the_default_on_every_benched_shape() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = bench_shapes(false);
    for s in shapes.shrink {
        check_shrink(dir.path(), s);
    }
    for s in shapes.expand {
        check_expand(dir.path(), s);
    }
    for s in shapes.cold {
        check_cold(dir.path(), s, "f32", false);
    }
}

#[test]
fn the_tuned_tiling_is_accepted_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShrinkShape {
        batch: 3,
        hidden_in: 700,
        rank: 8,
        num_loras: 2,
    };
    tune(dir.path(), "bgmv-shrink", &shrink_spec(&s), &[]);
    let best = dir.path().join("best.json");
    // check takes the shape from the tiling.
    let text = ok(&cli(&[
        "check",
        "bgmv-shrink",
        "--device",
        "emu",
        "--tiling",
        best.to_str().unwrap(),
        "--trials",
        "2",
        "--dtype",
        "bf16",
    ]));
    assert!(
        text.contains("b=3,h=700,r=8,l=2") && text.contains("within tolerance"),
        "{text}"
    );
    // A tiling of another kernel is refused with a message naming the kernel.
    let out = cli(&[
        "check",
        "cold-score",
        "--device",
        "emu",
        "--tiling",
        best.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a cold_score tiling"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every candidate of the search space validates, the default comes first, and each survives a
    /// JSON round trip.
    #[test]
    fn candidates_are_valid_and_start_with_the_default(
        batch in 1usize..=64, hidden in 1usize..=9000, rank in 1usize..=128, loras in 1usize..=16,
        extra in 0usize..=64, rows in 1usize..=64, vocab in 1usize..=160_000, bf: bool, scores: bool,
    ) {
        let p = DeviceProfile::ascend_910b();
        let dt = if bf { DType::Bf16 } else { DType::F16 };
        let s = ShrinkShape { batch, hidden_in: hidden, rank, num_loras: loras };
        let c = BgmvShrinkTiling::candidates(s, dt, 1.0, &p).unwrap();
        prop_assert_eq!(c[0], BgmvShrinkTiling::choose(s, dt, 1.0, &p).unwrap());
        for t in &c {
            prop_assert!(t.validate(s, dt, &p).is_ok(), "{:?}", t);
            let back: BgmvShrinkTiling = serde_json::from_str(&serde_json::to_string(t).unwrap()).unwrap();
            prop_assert_eq!(back, *t);
        }
        let e = ExpandShape { batch, rank, hidden_out: hidden, hidden_full: hidden + extra, slice_offset: extra / 2, num_loras: loras };
        let c = BgmvExpandTiling::candidates(e, dt, true, &p).unwrap();
        prop_assert_eq!(c[0], BgmvExpandTiling::choose(e, dt, true, &p).unwrap());
        for t in &c {
            prop_assert!(t.validate(e, dt, &p).is_ok(), "{:?}", t);
        }
        for cdt in [DType::F16, DType::F32] {
            let c = ColdScoreTiling::candidates(rows, vocab, cdt, ColdParams::new(0.1, 0.5).unwrap(), scores, &p).unwrap();
            prop_assert_eq!(c[0], ColdScoreTiling::choose(rows, vocab, cdt, ColdParams::new(0.1, 0.5).unwrap(), scores, &p).unwrap());
            for t in &c {
                prop_assert!(t.validate(rows, vocab, cdt, ColdParams::new(0.1, 0.5).unwrap(), &p).is_ok(), "{:?}", t);
                let back: ColdScoreTiling = serde_json::from_str(&serde_json::to_string(t).unwrap()).unwrap();
                prop_assert_eq!(back, *t);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Through the binary, on small random shapes: the proposed tiling validates and is no worse than
    /// the default by tune's own measure.
    #[test]
    fn tune_proposes_valid_tilings_on_random_shapes(
        batch in 1usize..=8, hidden in 1usize..=1500, rank in 1usize..=64, loras in 1usize..=4,
        extra in 0usize..=16, rows in 1usize..=8, vocab in 1usize..=40_000, scores: bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        check_shrink(dir.path(), ShrinkShape { batch, hidden_in: hidden, rank, num_loras: loras });
        check_expand(dir.path(), ExpandShape { batch, rank, hidden_out: hidden, hidden_full: hidden + extra, slice_offset: extra, num_loras: loras });
        check_cold(dir.path(), ColdShape { rows, vocab }, "bf16", scores);
    }
}
