//! Fuzz-style properties of the tiling files `run --tiling` and the benches read
//! (`harness::parse_tiling`, `harness::read_tiling`), for each of the three kernels: random bytes
//! and mutations of valid tilings (byte edits, hostile JSON values in each field) never panic,
//! every error is an `InvalidFile` naming the file and a field, and memory stays within a bound of
//! the input size. What deserialises is then held to the contract that it never reaches a launch
//! unvalidated: `validate` against the tiling's own shape either rejects it with a named error or
//! accepts a tiling the chip can run (blocks, UB), and through the op on the emulator a rejected
//! tiling launches nothing while an accepted one computes what the oracle computes.
//!
//! Bound: serde_json reads the bytes in place and builds only the flat struct (no map of the
//! document); an error may quote one token of the input (the invalid value), so its message is at
//! most `len + 1 KiB` (our wording and the file name are under 1 KiB), and building it by appending
//! may allocate up to twice that once. So the largest single allocation is at most `2 len + 2 KiB`
//! and the peak `3 len + 4 KiB`.

mod fuzz_common;

use ascend_cold::contracts::{ColdParams, ExpandShape, ShrinkShape};
use ascend_cold::harness::{parse_tiling, read_tiling};
use ascend_cold::ops::{self, AdapterIndices, BgmvShrink};
use ascend_cold::reference;
use ascend_cold::runtime::emu;
use ascend_cold::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use ascend_cold::{Device, DeviceBuffer, DeviceProfile, Stream};
use fuzz_common::*;
use half::f16;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

const NAME: &str = "fuzzed_tiling.json";

const BOUND: Bound = Bound {
    largest_factor: 2,
    largest_const: 2048,
    peak_factor: 3,
    peak_const: 4096,
};

/// The shrink shape the op-level cases launch on (small: the emulator runs each accepted tiling).
const SHRINK: ShrinkShape = ShrinkShape {
    batch: 3,
    hidden_in: 200,
    rank: 8,
    num_loras: 2,
};

fn profile() -> DeviceProfile {
    DeviceProfile::ascend_910b()
}

fn params() -> ColdParams {
    ColdParams::new(0.1, 0.5).unwrap()
}

/// One valid tiling of each kind, as `tune --out` writes them.
fn valid_texts() -> [(&'static str, String); 3] {
    let p = profile();
    let shrink = BgmvShrinkTiling::choose(SHRINK, DType::F16, 1.0, &p).unwrap();
    let es = ExpandShape {
        batch: 4,
        rank: 16,
        hidden_out: 300,
        hidden_full: 300,
        slice_offset: 0,
        num_loras: 2,
    };
    let expand = BgmvExpandTiling::choose(es, DType::Bf16, true, &p).unwrap();
    let cold = ColdScoreTiling::choose(2, 40_000, DType::F32, params(), false, &p).unwrap();
    let text = |t: &dyn erased::Json| t.pretty();
    [
        ("bgmv-shrink", text(&shrink)),
        ("bgmv-expand", text(&expand)),
        ("cold-score", text(&cold)),
    ]
}

mod erased {
    /// A tiling as pretty JSON, whatever its type.
    pub trait Json {
        fn pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn pretty(&self) -> String {
            serde_json::to_string_pretty(self).unwrap()
        }
    }
}

/// Parses `bytes` as a `T` under the tracker; an accepted tiling goes on to `accepted`.
fn check_kind<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    kind: &str,
    bytes: &[u8],
    accepted: impl Fn(&T) -> Result<(), TestCaseError>,
) -> Result<Outcome, TestCaseError> {
    let (r, usage) = measure(|| parse_tiling::<T>(Path::new(NAME), kind, bytes));
    let r = no_panic("parse_tiling", r)?;
    BOUND.check("parse_tiling", bytes.len(), usage)?;
    let rejected = match r {
        Ok(t) => {
            // What was accepted writes back and reads again as itself.
            let again = serde_json::to_vec(&t).unwrap();
            let back = parse_tiling::<T>(Path::new(NAME), kind, &again);
            prop_assert_eq!(back.as_ref().ok(), Some(&t));
            let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| accepted(&t)));
            no_panic("validate", v)??;
            None
        }
        Err(e) => Some(named_error(&e, NAME)?),
    };
    Ok(Outcome {
        rejected,
        input: bytes.len(),
        usage,
    })
}

/// A validation error names what it rejects (never an empty message).
fn named_rejection(e: &ascend_cold::Error) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(
        msg.contains("expected") && msg.len() > 20,
        "unclear error {msg:?}"
    );
    Ok(())
}

/// A deserialised shrink tiling against its own shape: rejected with a named error, or runnable.
fn shrink_accepted(t: &BgmvShrinkTiling) -> Result<(), TestCaseError> {
    let p = profile();
    let shape = ShrinkShape {
        batch: t.batch as usize,
        hidden_in: t.hidden_in as usize,
        rank: t.rank as usize,
        num_loras: t.num_loras as usize,
    };
    match t.validate(shape, DType::F16, &p) {
        Ok(()) => {
            prop_assert!((1..=p.vector_cores).contains(&t.block_num));
            prop_assert!(t.ub_bytes(DType::F16) <= u64::from(p.ub_bytes));
        }
        Err(e) => named_rejection(&e)?,
    }
    Ok(())
}

fn expand_accepted(t: &BgmvExpandTiling) -> Result<(), TestCaseError> {
    let p = profile();
    let shape = ExpandShape {
        batch: t.batch as usize,
        rank: t.rank as usize,
        hidden_out: t.hidden_out as usize,
        hidden_full: t.hidden_full as usize,
        slice_offset: t.slice_offset as usize,
        num_loras: t.num_loras as usize,
    };
    match t.validate(shape, DType::Bf16, &p) {
        Ok(()) => {
            prop_assert!((1..=p.vector_cores).contains(&t.block_num));
            prop_assert!(t.ub_bytes(DType::Bf16) <= u64::from(p.ub_bytes));
        }
        Err(e) => named_rejection(&e)?,
    }
    Ok(())
}

fn cold_accepted(t: &ColdScoreTiling) -> Result<(), TestCaseError> {
    let p = profile();
    let (rows, vocab) = (t.rows as usize, t.vocab as usize);
    match t.validate(rows, vocab, DType::F32, params(), &p) {
        Ok(()) => {
            prop_assert!((1..=p.vector_cores).contains(&t.block_num));
            prop_assert!(t.ub_bytes(DType::F32) <= u64::from(p.ub_bytes));
            prop_assert_eq!((t.ln_alpha, t.beta), (params().ln_alpha(), params().beta()));
        }
        Err(e) => named_rejection(&e)?,
    }
    Ok(())
}

fn check(kind: usize, bytes: &[u8]) -> Result<Outcome, TestCaseError> {
    match kind {
        0 => check_kind("bgmv-shrink", bytes, shrink_accepted),
        1 => check_kind("bgmv-expand", bytes, expand_accepted),
        _ => check_kind("cold-score", bytes, cold_accepted),
    }
}

/// A valid tiling text with JSON edits (hostile values in its fields, removed, added, duplicated
/// or reordered members, text edits).
fn edited(text: &str, ops: &[JsonOp]) -> Vec<u8> {
    mutate_json(&serde_json::from_str::<Value>(text).unwrap(), ops)
}

#[test]
fn random_bytes_of_each_kind() {
    let _serial = serial();
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        // Object-shaped text, so the field logic sees the random part.
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
            let mut t = b"{\"block_num\":".to_vec();
            t.extend(b);
            t
        }),
    ];
    let s = run(
        "tiling random bytes",
        file!(),
        6_000,
        (0usize..3, bytes),
        |(kind, bytes)| check(kind, &bytes),
    );
    assert!(s.rejected > 0);
}

#[test]
fn mutated_valid_tilings_of_each_kind() {
    let _serial = serial();
    let texts = valid_texts();
    let s = run(
        "tiling byte edits",
        file!(),
        6_000,
        (0usize..3, proptest::collection::vec(byte_op(), 0..4)),
        |(kind, ops)| {
            let bytes = texts[kind].1.as_bytes().to_vec();
            check(kind, &apply(bytes, &ops, &[]))
        },
    );
    assert!(s.accepted > 0 && s.rejected > 0, "edits all went one way");
    let s = run(
        "tiling JSON edits",
        file!(),
        6_000,
        (0usize..3, proptest::collection::vec(json_op(), 1..4)),
        |(kind, ops)| check(kind, &edited(&texts[kind].1, &ops)),
    );
    assert!(s.accepted > 0 && s.rejected > 0, "values all went one way");
}

/// Through a file: the same errors, naming it.
#[test]
fn read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NAME);
    let texts = valid_texts();
    for (kind, text) in &texts {
        replace_file(&path, text.as_bytes());
        match *kind {
            "bgmv-shrink" => drop(read_tiling::<BgmvShrinkTiling>(&path, kind).unwrap()),
            "bgmv-expand" => drop(read_tiling::<BgmvExpandTiling>(&path, kind).unwrap()),
            _ => drop(read_tiling::<ColdScoreTiling>(&path, kind).unwrap()),
        }
        replace_file(&path, &text.as_bytes()[..text.len() / 2]);
        let err = read_tiling::<ColdScoreTiling>(&path, kind).unwrap_err();
        assert!(named_error(&err, NAME).is_ok(), "{err}");
    }
    let err = read_tiling::<ColdScoreTiling>(&dir.path().join("absent.json"), "cold-score");
    assert!(matches!(err, Err(ascend_cold::Error::Io { .. })));
}

/// Every deserialised shrink tiling, handed to the op on a fixed shape: rejected before launch
/// (the emulator counts no launch), or launched and equal to the oracle.
#[test]
fn deserialised_tilings_never_reach_a_launch_unvalidated() {
    let _serial = serial();
    let device = Device::emulator().unwrap();
    let stream = Stream::new(&device).unwrap();
    let id = device.id();
    let mut rng_x = 1u32;
    let mut next = || {
        rng_x = rng_x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        f16::from_f32((rng_x >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
    };
    let x: Vec<f16> = (0..SHRINK.batch * SHRINK.hidden_in)
        .map(|_| next())
        .collect();
    let w: Vec<f16> = (0..SHRINK.num_loras * SHRINK.rank * SHRINK.hidden_in)
        .map(|_| next())
        .collect();
    let idx = [1i64, -1, 0];
    let mut want = vec![0f32; SHRINK.batch * SHRINK.rank];
    reference::bgmv_shrink(&x, &w, &idx, &mut want, SHRINK, 1.0).unwrap();
    let (dx, dw) = (
        DeviceBuffer::from_host(&device, &x).unwrap(),
        DeviceBuffer::from_host(&device, &w).unwrap(),
    );
    let base = valid_texts()[0].1.clone();
    let s = run(
        "tiling through the op",
        file!(),
        1_500,
        proptest::collection::vec(json_op(), 1..3),
        |ops| {
            let bytes = edited(&base, &ops);
            let Ok(t) = parse_tiling::<BgmvShrinkTiling>(Path::new(NAME), "bgmv-shrink", &bytes)
            else {
                return Ok(Outcome {
                    rejected: Some("json".into()),
                    input: bytes.len(),
                    usage: Usage {
                        largest: 0,
                        peak: 0,
                    },
                });
            };
            let mut y = DeviceBuffer::from_host(&device, &vec![0f32; want.len()]).unwrap();
            let before = emu::stats(id).unwrap().launches;
            let op = BgmvShrink {
                x: dx.view(),
                weights: dw.view(),
                indices: AdapterIndices::Host(&idx),
                y: y.view_mut(),
                shape: SHRINK,
                scale: 1.0,
            };
            let r = ops::bgmv_shrink(&stream, op, Some(&t));
            stream.synchronize().unwrap();
            let after = emu::stats(id).unwrap().launches;
            let rejected = match r {
                Err(e) => {
                    named_rejection(&e)?;
                    prop_assert_eq!(after, before, "a refused tiling launched");
                    Some("validate".to_string())
                }
                Ok(()) => {
                    prop_assert_eq!(after, before + 1);
                    let got = y.to_vec().unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert!((g - w).abs() <= 1e-3, "{g} vs {w} with {t:?}");
                    }
                    None
                }
            };
            Ok(Outcome {
                rejected,
                input: bytes.len(),
                usage: Usage {
                    largest: 0,
                    peak: 0,
                },
            })
        },
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "{} launched, {} refused",
        s.accepted,
        s.rejected
    );
}
