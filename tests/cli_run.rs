//! `ascend-cold run`: .npy files written here (as numpy writes them; no Python needed), the binary run on
//! the emulator, its outputs compared with `ascend_cold::reference` under the tolerances `check` uses,
//! for every kernel and dtype; init / no-add / slice-offset semantics; exit code 3; numpy-worded errors.

use ascend_cold::contracts::{ColdParams, ColdShape, ExpandShape, Float, ShrinkShape};
use ascend_cold::harness::{
    compare_cold, compare_expand, compare_shrink, random_vec, widen, ColdResult,
};
use ascend_cold::npy::{NpyArray, NpyDtype};
use ascend_cold::reference;
use ascend_cold::tiling::{BgmvShrinkTiling, DType};
use ascend_cold::DeviceProfile;
use half::{bf16, f16};
use rand::{rngs::StdRng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ascend-cold"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn write16(&self, name: &str, a: &NpyArray, void: bool) -> String {
        let bytes = if void {
            as_void(a.to_bytes())
        } else {
            a.to_bytes()
        };
        std::fs::write(self.path(name), bytes).unwrap();
        self.arg(name)
    }
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    fn write(&self, name: &str, a: &NpyArray) -> String {
        a.write(&self.path(name)).unwrap();
        self.arg(name)
    }
}

/// A 16-bit float array: `<f2` for f16, `<u2` bit patterns for bf16.
fn npy16<T: Float + bytemuck::Pod>(v: &[T], shape: Vec<usize>, dtype: DType) -> NpyArray {
    let d = if dtype == DType::F16 {
        NpyDtype::F16
    } else {
        NpyDtype::Bits16
    };
    NpyArray::from_values(d, shape, v).unwrap()
}

/// Saves bf16 bits as ml_dtypes' arrays are saved by numpy: descr `|V2` (same header length as `<u2`).
fn as_void(bytes: Vec<u8>) -> Vec<u8> {
    let mut bytes = bytes;
    let at = bytes.windows(5).position(|w| w == b"'<u2'").unwrap();
    bytes[at..at + 5].copy_from_slice(b"'|V2'");
    bytes
}

fn read(path: &Path) -> NpyArray {
    NpyArray::read(path).unwrap()
}

fn shrink_case<T: Float + bytemuck::Pod>(dtype: DType, void: bool, with_init: bool) {
    let dir = Dir::new();
    let mut rng = StdRng::seed_from_u64(7);
    let s = ShrinkShape {
        batch: 5,
        hidden_in: 300,
        rank: 8,
        num_loras: 3,
    };
    let x: Vec<T> = random_vec(&mut rng, s.batch * s.hidden_in, 1.0);
    let w: Vec<T> = random_vec(&mut rng, s.num_loras * s.rank * s.hidden_in, 0.5);
    let idx = vec![0i64, -1, 2, 1, -1];
    let y0: Vec<f32> = if with_init {
        random_vec(&mut rng, s.batch * s.rank, 3.0)
    } else {
        vec![0.0; s.batch * s.rank]
    };
    let mut args = vec![
        "run".to_string(),
        "bgmv-shrink".into(),
        "--device".into(),
        "emu".into(),
        "--x".into(),
        dir.write16("x.npy", &npy16(&x, vec![5, 300], dtype), void),
        "--weights".into(),
        dir.write16("w.npy", &npy16(&w, vec![3, 8, 300], dtype), void),
        "--indices".into(),
        dir.write(
            "i.npy",
            &NpyArray::from_values(NpyDtype::I64, vec![5], &idx).unwrap(),
        ),
        "--scale".into(),
        "0.75".into(),
        "--out".into(),
        dir.arg("y.npy"),
    ];
    if with_init {
        args.push("--init".into());
        args.push(dir.write(
            "y0.npy",
            &NpyArray::from_values(NpyDtype::F32, vec![5, 8], &y0).unwrap(),
        ));
    }
    if dtype == DType::Bf16 {
        args.extend(["--dtype".into(), "bf16".into()]);
    }
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&out);
    let y = read(&dir.path("y.npy"));
    assert_eq!((y.dtype, y.shape.clone()), (NpyDtype::F32, vec![5, 8]));
    let got: Vec<f32> = y.values().unwrap();
    let mut want = y0.clone();
    reference::bgmv_shrink(&x, &w, &idx, &mut want, s, 0.75).unwrap();
    let e = compare_shrink(&widen(&x), &widen(&w), &idx, &y0, &got, &want, s, 0.75);
    assert!(e.ok(), "{dtype:?}: {:?}", e.first_failure);
    // Rows with index -1 keep the init (zeros by default) bit for bit.
    assert_eq!(&got[8..16], &y0[8..16]);
}

#[test]
fn shrink_matches_reference_f16_bf16_u2_v2_with_and_without_init() {
    shrink_case::<f16>(DType::F16, false, false);
    shrink_case::<f16>(DType::F16, false, true);
    shrink_case::<bf16>(DType::Bf16, false, true);
    shrink_case::<bf16>(DType::Bf16, true, false);
}

fn expand_case<T: Float + bytemuck::Pod>(dtype: DType, init: bool, add: bool, off: usize) {
    let dir = Dir::new();
    let mut rng = StdRng::seed_from_u64(11);
    let (b, r, h_out, l) = (4, 16, 200, 2);
    let full = if init { off + h_out + 24 } else { off + h_out };
    let s = ExpandShape {
        batch: b,
        rank: r,
        hidden_out: h_out,
        hidden_full: full,
        slice_offset: off,
        num_loras: l,
    };
    let x: Vec<f32> = random_vec(&mut rng, b * r, 1.0);
    let w: Vec<T> = random_vec(&mut rng, l * h_out * r, 0.5);
    let idx = vec![1i64, -1, 0, 1];
    let y0: Vec<T> = if init {
        random_vec(&mut rng, b * full, 2.0)
    } else {
        vec![T::from_f64(0.0); b * full]
    };
    let mut args = vec![
        "run".to_string(),
        "bgmv-expand".into(),
        "--device".into(),
        "emu".into(),
        "--x".into(),
        dir.write(
            "x.npy",
            &NpyArray::from_values(NpyDtype::F32, vec![b, r], &x).unwrap(),
        ),
        "--weights".into(),
        dir.write("w.npy", &npy16(&w, vec![l, h_out, r], dtype)),
        "--indices".into(),
        dir.write(
            "i.npy",
            &NpyArray::from_values(NpyDtype::I64, vec![b], &idx).unwrap(),
        ),
        "--out".into(),
        dir.arg("y.npy"),
        "--slice-offset".into(),
        off.to_string(),
    ];
    if init {
        args.push("--init".into());
        args.push(dir.write("y0.npy", &npy16(&y0, vec![b, full], dtype)));
    }
    if !add {
        args.push("--no-add".into());
    }
    if dtype == DType::Bf16 {
        args.extend(["--dtype".into(), "bf16".into()]);
    }
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&out);
    let y = read(&dir.path("y.npy"));
    let want_dtype = if dtype == DType::F16 {
        NpyDtype::F16
    } else {
        NpyDtype::Bits16
    };
    assert_eq!((y.dtype, y.shape.clone()), (want_dtype, vec![b, full]));
    let got: Vec<T> = y.values().unwrap();
    let mut want = y0.clone();
    reference::bgmv_expand(&x, &w, &idx, &mut want, s, add).unwrap();
    let e = compare_expand(
        dtype,
        &widen(&x),
        &widen(&w),
        &idx,
        &widen(&y0),
        &widen(&got),
        &widen(&want),
        s,
        add,
    );
    assert!(
        e.ok(),
        "{dtype:?} init {init} add {add} off {off}: {:?}",
        e.first_failure
    );
}

#[test]
fn expand_matches_reference_with_init_offset_and_no_add() {
    expand_case::<f16>(DType::F16, false, true, 0);
    expand_case::<f16>(DType::F16, true, true, 40);
    expand_case::<f16>(DType::F16, true, false, 8);
    expand_case::<bf16>(DType::Bf16, true, true, 3);
    expand_case::<bf16>(DType::Bf16, false, false, 16);
}

fn cold_case<T: Float + bytemuck::Pod>(dtype: DType, nan_row: Option<usize>) {
    let dir = Dir::new();
    let mut rng = StdRng::seed_from_u64(3);
    let s = ColdShape {
        rows: 3,
        vocab: 5003,
    };
    let mut e: Vec<T> = random_vec(&mut rng, s.rows * s.vocab, 8.0);
    let a: Vec<T> = random_vec(&mut rng, s.rows * s.vocab, 8.0);
    if let Some(row) = nan_row {
        e[row * s.vocab + 17] = T::from_f64(f64::NAN);
    }
    let npy = |v: &[T]| match dtype {
        DType::F32 => NpyArray::from_values(NpyDtype::F32, vec![3, 5003], v).unwrap(),
        d => npy16(v, vec![3, 5003], d),
    };
    let mut args = vec![
        "run".to_string(),
        "cold-score".into(),
        "--device".into(),
        "emu".into(),
        "--expert".into(),
        dir.write("e.npy", &npy(&e)),
        "--base".into(),
        dir.write("a.npy", &npy(&a)),
        "--alpha".into(),
        "0.1".into(),
        "--beta".into(),
        "0.5".into(),
        "--out".into(),
        dir.arg("t.npy"),
        "--scores-out".into(),
        dir.arg("s.npy"),
    ];
    if dtype == DType::Bf16 {
        args.extend(["--dtype".into(), "bf16".into()]);
    }
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let t = read(&dir.path("t.npy"));
    assert_eq!((t.dtype, t.shape.clone()), (NpyDtype::I64, vec![3]));
    let sc = read(&dir.path("s.npy"));
    assert_eq!((sc.dtype, sc.shape.clone()), (NpyDtype::F32, vec![3, 5003]));
    let tokens: Vec<i64> = t.values().unwrap();
    let params = ColdParams::new(0.1, 0.5).unwrap();
    let picks = reference::cold_score(&e, &a, s, params, None).unwrap();
    let ref_tokens: Vec<i64> = picks.iter().map(|p| p.token).collect();
    // The CLI does not write the best scores: hold the kernel's token to the reference's score of it.
    let best = tokens
        .iter()
        .enumerate()
        .map(|(n, &t)| {
            if t < 0 {
                f32::NAN
            } else {
                let i = n * s.vocab + t as usize;
                reference::cold_score_of(e[i].to_f64(), a[i].to_f64(), 0.5) as f32
            }
        })
        .collect();
    let got = ColdResult {
        tokens: tokens.clone(),
        best,
        scores: Some(sc.values().unwrap()),
    };
    let errs = compare_cold(&widen(&e), &widen(&a), s, params, &ref_tokens, &got);
    assert!(errs.ok(), "{dtype:?}: {:?}", errs.first_failure);
    match nan_row {
        None => ok(&out),
        Some(row) => {
            assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
            assert_eq!(tokens[row], -1);
            let msg = stderr(&out);
            assert!(
                msg.contains(&format!("row {row}")) && msg.contains("--expert"),
                "{msg}"
            );
            assert!(tokens
                .iter()
                .enumerate()
                .all(|(n, &t)| (n == row) == (t == -1)));
        }
    }
}

/// Issue 14: finite logits and `--beta 1e38` overflow the score; the row gets token -2 and the
/// message names `beta` and the row, never a non-finite input (there is none). A row with a real
/// NaN in the same run keeps its own fault.
#[test]
fn cold_score_overflow_names_beta_not_the_inputs() {
    let dir = Dir::new();
    let (rows, vocab) = (2usize, 64usize);
    let mut e = vec![1.0f32; rows * vocab];
    let a = vec![2.0f32; rows * vocab];
    e[3] = 10.0; // row 0: 10 (1 + 1e38) = inf, 2e38 finite: +inf
    e[vocab + 5] = f32::NAN; // row 1: a genuinely non-finite input
    let npy = |v: &[f32]| NpyArray::from_values(NpyDtype::F32, vec![rows, vocab], v).unwrap();
    let args = [
        "run".to_string(),
        "cold-score".into(),
        "--device".into(),
        "emu".into(),
        "--expert".into(),
        dir.write("e.npy", &npy(&e)),
        "--base".into(),
        dir.write("a.npy", &npy(&a)),
        "--beta".into(),
        "1e38".into(),
        "--out".into(),
        dir.arg("t.npy"),
    ];
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let tokens: Vec<i64> = read(&dir.path("t.npy")).values().unwrap();
    let params = ColdParams::new(0.1, 1e38).unwrap();
    let shape = ColdShape { rows, vocab };
    let picks = reference::cold_score(&e, &a, shape, params, None).unwrap();
    assert_eq!(tokens, picks.iter().map(|p| p.token).collect::<Vec<_>>());
    assert_eq!(tokens, [-2, -1]);
    let msg = stderr(&out);
    let lines: Vec<&str> = msg.lines().collect();
    let row0 = lines
        .iter()
        .find(|l| l.contains("row 0"))
        .expect("row 0 named");
    assert!(
        row0.contains("beta") && !row0.contains("NaN or infinite"),
        "{msg}"
    );
    let row1 = lines
        .iter()
        .find(|l| l.contains("row 1"))
        .expect("row 1 named");
    assert!(
        row1.contains("--expert") && row1.contains("NaN or infinite"),
        "{msg}"
    );
}

#[test]
fn cold_score_matches_reference_every_dtype() {
    cold_case::<f16>(DType::F16, None);
    cold_case::<bf16>(DType::Bf16, None);
    cold_case::<f32>(DType::F32, None);
}

#[test]
fn cold_score_non_finite_row_gets_minus_one_and_exit_code_3() {
    cold_case::<f32>(DType::F32, Some(1));
}

/// Writes a valid shrink input set with the given x / weights / indices arrays and returns the error.
fn shrink_error(x: NpyArray, w: NpyArray, i: NpyArray, extra: &[&str]) -> String {
    let dir = Dir::new();
    let mut args = vec![
        "run".to_string(),
        "bgmv-shrink".into(),
        "--device".into(),
        "emu".into(),
        "--x".into(),
        dir.write("x.npy", &x),
        "--weights".into(),
        dir.write("w.npy", &w),
        "--indices".into(),
        dir.write("i.npy", &i),
        "--scale".into(),
        "1".into(),
        "--out".into(),
        dir.arg("y.npy"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!dir.path("y.npy").exists(), "no output on error");
    stderr(&out)
}

#[test]
fn bad_shapes_and_dtypes_are_explained_in_numpy_terms() {
    let f16s = |n: usize| vec![f16::ONE; n];
    let x = NpyArray::from_values(NpyDtype::F16, vec![2, 64], &f16s(128)).unwrap();
    let w = NpyArray::from_values(NpyDtype::F16, vec![3, 4, 64], &f16s(768)).unwrap();
    let i = NpyArray::from_values(NpyDtype::I64, vec![2], &[0i64, 1]).unwrap();
    // Hidden sizes disagree.
    let w_bad = NpyArray::from_values(NpyDtype::F16, vec![3, 4, 60], &f16s(720)).unwrap();
    let msg = shrink_error(x.clone(), w_bad, i.clone(), &[]);
    assert!(
        msg.contains("(3, 4, 60)") && msg.contains("(2, 64)"),
        "{msg}"
    );
    // x is 1-D.
    let x1 = NpyArray::from_values(NpyDtype::F16, vec![128], &f16s(128)).unwrap();
    let msg = shrink_error(x1, w.clone(), i.clone(), &[]);
    assert!(msg.contains("2-D") && msg.contains("(128,)"), "{msg}");
    // Indices as float32, or of the wrong length.
    let i_f = NpyArray::from_values(NpyDtype::F32, vec![2], &[0.0f32, 1.0]).unwrap();
    let msg = shrink_error(x.clone(), w.clone(), i_f, &[]);
    assert!(msg.contains("int64") && msg.contains("float32"), "{msg}");
    let i3 = NpyArray::from_values(NpyDtype::I64, vec![3], &[0i64, 1, 2]).unwrap();
    let msg = shrink_error(x.clone(), w.clone(), i3, &[]);
    assert!(msg.contains("(2,)") && msg.contains("(3,)"), "{msg}");
    // An adapter index past the stack.
    let i_big = NpyArray::from_values(NpyDtype::I64, vec![2], &[0i64, 3]).unwrap();
    let msg = shrink_error(x.clone(), w.clone(), i_big, &[]);
    assert!(msg.contains("row 1") && msg.contains("index 3"), "{msg}");
    // bf16 bit patterns without --dtype bf16, and float16 with it.
    let xb = NpyArray::from_values(NpyDtype::Bits16, vec![2, 64], &[0u16; 128]).unwrap();
    let msg = shrink_error(xb, w.clone(), i.clone(), &[]);
    assert!(msg.contains("--dtype bf16"), "{msg}");
    let msg = shrink_error(x.clone(), w.clone(), i.clone(), &["--dtype", "bf16"]);
    assert!(msg.contains("float16 (<f2)"), "{msg}");
    // float32 x for a 16-bit kernel.
    let xf = NpyArray::from_values(NpyDtype::F32, vec![2, 64], &[0f32; 128]).unwrap();
    let msg = shrink_error(xf, w.clone(), i.clone(), &[]);
    assert!(
        msg.contains("float16 or bfloat16") && msg.contains("astype"),
        "{msg}"
    );
    // A tiling of another kernel, and one of another shape.
    let dir = Dir::new();
    std::fs::write(dir.path("t.json"), r#"{"rows": 1}"#).unwrap();
    let msg = shrink_error(
        x.clone(),
        w.clone(),
        i.clone(),
        &["--tiling", &dir.arg("t.json")],
    );
    assert!(msg.contains("not a bgmv_shrink tiling"), "{msg}");
    let other = ShrinkShape {
        batch: 9,
        hidden_in: 64,
        rank: 4,
        num_loras: 3,
    };
    let t =
        BgmvShrinkTiling::choose(other, DType::F16, 1.0, &DeviceProfile::ascend_910b()).unwrap();
    std::fs::write(dir.path("t2.json"), serde_json::to_string(&t).unwrap()).unwrap();
    let msg = shrink_error(x, w, i, &["--tiling", &dir.arg("t2.json")]);
    assert!(msg.contains("tiling"), "{msg}");
}

#[test]
fn expand_and_cold_shape_errors() {
    let dir = Dir::new();
    let x = dir.write(
        "x.npy",
        &NpyArray::from_values(NpyDtype::F32, vec![2, 8], &[0f32; 16]).unwrap(),
    );
    let w = dir.write(
        "w.npy",
        &NpyArray::from_values(NpyDtype::F16, vec![1, 32, 8], &[f16::ZERO; 256]).unwrap(),
    );
    let i = dir.write(
        "i.npy",
        &NpyArray::from_values(NpyDtype::I64, vec![2], &[0i64, 0]).unwrap(),
    );
    let y0 = dir.write(
        "y0.npy",
        &NpyArray::from_values(NpyDtype::F16, vec![2, 40], &[f16::ZERO; 80]).unwrap(),
    );
    let out = cli(&[
        "run",
        "bgmv-expand",
        "--device",
        "emu",
        "--x",
        &x,
        "--weights",
        &w,
        "--indices",
        &i,
        "--out",
        &dir.arg("y.npy"),
        "--init",
        &y0,
        "--slice-offset",
        "10",
    ]);
    let msg = stderr(&out);
    assert!(
        out.status.code() == Some(1) && msg.contains("(2, 40)") && msg.contains("42"),
        "{msg}"
    );
    let e = dir.write(
        "e.npy",
        &NpyArray::from_values(NpyDtype::F32, vec![2, 8], &[0f32; 16]).unwrap(),
    );
    let a = dir.write(
        "a.npy",
        &NpyArray::from_values(NpyDtype::F32, vec![2, 7], &[0f32; 14]).unwrap(),
    );
    let out = cli(&[
        "run",
        "cold-score",
        "--device",
        "emu",
        "--expert",
        &e,
        "--base",
        &a,
        "--out",
        &dir.arg("t.npy"),
    ]);
    let msg = stderr(&out);
    assert!(
        out.status.code() == Some(1) && msg.contains("(2, 8)") && msg.contains("(2, 7)"),
        "{msg}"
    );
    let out = cli(&[
        "run",
        "cold-score",
        "--device",
        "emu",
        "--expert",
        &e,
        "--base",
        &e,
        "--alpha",
        "0",
        "--out",
        &dir.arg("t.npy"),
    ]);
    let msg = stderr(&out);
    assert!(
        out.status.code() == Some(1) && msg.contains("alpha"),
        "{msg}"
    );
}

#[test]
fn stats_json_reports_time_and_traffic() {
    let dir = Dir::new();
    let mut rng = StdRng::seed_from_u64(1);
    let e: Vec<f32> = random_vec(&mut rng, 2 * 40_000, 8.0);
    let a: Vec<f32> = random_vec(&mut rng, 2 * 40_000, 8.0);
    let ef = dir.write(
        "e.npy",
        &NpyArray::from_values(NpyDtype::F32, vec![2, 40_000], &e).unwrap(),
    );
    let af = dir.write(
        "a.npy",
        &NpyArray::from_values(NpyDtype::F32, vec![2, 40_000], &a).unwrap(),
    );
    let out = cli(&[
        "run",
        "cold-score",
        "--device",
        "emu",
        "--expert",
        &ef,
        "--base",
        &af,
        "--out",
        &dir.arg("t.npy"),
        "--repeat",
        "3",
        "--warmup",
        "1",
        "--stats-json",
        &dir.arg("s.json"),
    ]);
    ok(&out);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("s.json")).unwrap()).unwrap();
    assert_eq!(v["times_ms"].as_array().unwrap().len(), 3);
    assert_eq!(v["min_bytes"].as_u64().unwrap(), 2 * 40_000 * 8 + 32);
    let ratio = v["traffic_over_min"].as_f64().unwrap();
    assert!((1.0..=1.5).contains(&ratio), "{ratio}");
}

/// Regression: an empty batch used to fail after writing its output, when the stats asked the tiling
/// of a zero-row shape; it launches nothing and writes empty arrays.
#[test]
fn empty_batches_write_empty_outputs() {
    let dir = Dir::new();
    let x = dir.write(
        "x.npy",
        &NpyArray::from_values(NpyDtype::F16, vec![0, 64], &[] as &[f16]).unwrap(),
    );
    let w = dir.write(
        "w.npy",
        &NpyArray::from_values(NpyDtype::F16, vec![2, 4, 64], &[f16::ZERO; 512]).unwrap(),
    );
    let i = dir.write(
        "i.npy",
        &NpyArray::from_values(NpyDtype::I64, vec![0], &[] as &[i64]).unwrap(),
    );
    ok(&cli(&[
        "run",
        "bgmv-shrink",
        "--device",
        "emu",
        "--x",
        &x,
        "--weights",
        &w,
        "--indices",
        &i,
        "--scale",
        "1",
        "--out",
        &dir.arg("y.npy"),
        "--stats-json",
        &dir.arg("s.json"),
    ]));
    assert_eq!(read(&dir.path("y.npy")).shape, vec![0, 4]);
    let e = dir.write(
        "e.npy",
        &NpyArray::from_values(NpyDtype::F32, vec![0, 10], &[] as &[f32]).unwrap(),
    );
    ok(&cli(&[
        "run",
        "cold-score",
        "--device",
        "emu",
        "--expert",
        &e,
        "--base",
        &e,
        "--out",
        &dir.arg("t.npy"),
    ]));
    assert_eq!(read(&dir.path("t.npy")).shape, vec![0]);
}

/// Sizes and counts a hostile user may pass: each is an error naming the flag, never a panic, an
/// abort on a huge allocation, or a wrapped loop bound that launches nothing and writes poison.
#[test]
fn huge_offsets_and_counts_are_refused_with_the_flag_named() {
    let dir = Dir::new();
    let x = dir.write(
        "x.npy",
        &NpyArray::from_values(NpyDtype::F32, vec![2, 4], &[1.0f32; 8]).unwrap(),
    );
    let w = dir.write("w.npy", &npy16(&[f16::ONE; 32], vec![1, 8, 4], DType::F16));
    let i = dir.write(
        "i.npy",
        &NpyArray::from_values(NpyDtype::I64, vec![2], &[0i64, -1]).unwrap(),
    );
    let out = dir.arg("y.npy");
    let base = [
        "run",
        "bgmv-expand",
        "--device",
        "emu",
        "--x",
        &x,
        "--weights",
        &w,
        "--indices",
        &i,
        "--out",
        &out,
    ];
    for (extra, flag, says) in [
        (
            ["--slice-offset", "18446744073709551000"],
            "--slice-offset",
            "fits in usize",
        ),
        (
            ["--slice-offset", "4000000000000"],
            "--slice-offset",
            "MiB of host memory",
        ),
        (
            ["--warmup", "18446744073709551615"],
            "--warmup",
            "at most 1000000",
        ),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        let result = cli(&args);
        let message = stderr(&result);
        assert_eq!(result.status.code(), Some(1), "{extra:?}: {message}");
        assert!(
            message.contains(flag) && message.contains(says),
            "{extra:?}: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        assert!(!dir.path("y.npy").exists(), "{extra:?} wrote an output");
    }
}
