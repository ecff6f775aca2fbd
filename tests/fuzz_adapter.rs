//! Fuzz-style properties of the PEFT adapter loader (`Adapter::load`, which reads
//! `adapter_config.json` and `adapter_model.safetensors`) and of stacking what it accepts
//! (`StackedAdapters::new`): random bytes, and mutations of valid adapters (written here in F32,
//! F16 and BF16 with list, regex and `all-linear` targets and `layers_to_transform`, and the four
//! peft-written fixtures) in the JSON config (wrong types, absurd numbers and ranks, hostile
//! regexes, deep nesting, duplicated and reordered keys, text damage) and in the safetensors file
//! (header edits with the length prefix kept or fixed, byte edits). Nothing may panic; every error
//! names a file of the adapter and a field; whatever is accepted has exactly the modules its config
//! selects, each of shape `[r, in]` / `[out, r]`, a finite scaling, and stacks with another
//! adapter; memory stays within a bound of the input size.
//!
//! Bounds (`len` = both files' bytes). The config is JSON (at most 32 times its text in one
//! allocation, 64 times at once: see `fuzz_hf`). A `target_modules` regex is at most 64 KiB and
//! compiles under a 1 MiB program limit; parsing and compiling one takes under 16 MiB whatever it
//! says (a megabyte of its program in one allocation). The weights are mapped and each tensor the
//! config selects is copied out as f32 (at most twice its stored bytes) after its shape was
//! checked. Stacking holds every module at the larger rank of the two adapters for both (the padded
//! smaller one is at most as large as the other's own weights). So: largest allocation at most
//! `32 len + 2 MiB`, held at once at most `64 len + 16 MiB`.

mod fuzz_common;
mod model_common;

use ascend_cold::model::adapter::MAX_REGEX_LEN;
use ascend_cold::model::hf::parse_config;
use ascend_cold::model::{Adapter, LlamaConfig, LoraTarget, RopeScaling, StackedAdapters};
use fuzz_common::*;
use model_common::{tiny_config, values, write_adapter};
use proptest::prelude::*;
use safetensors::Dtype;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

const BOUND: Bound = Bound {
    largest_factor: 32,
    largest_const: 2 << 20,
    peak_factor: 64,
    peak_const: 16 << 20,
};

/// An adapter folder in memory (`adapter_config.json`, `adapter_model.safetensors`) and the model
/// it belongs to.
#[derive(Clone)]
struct Base {
    model: LlamaConfig,
    config: Vec<u8>,
    weights: Vec<u8>,
}

fn written(
    model: &LlamaConfig,
    config: Value,
    r: usize,
    targets: &[LoraTarget],
    layers: &[usize],
    dtype: Dtype,
) -> Base {
    let mut tensors = BTreeMap::new();
    for &l in layers {
        for &t in targets {
            let (i, o) = t.dims(model);
            let key = |ab: &str| {
                format!(
                    "base_model.model.model.layers.{l}.{}.lora_{ab}.weight",
                    t.module_path()
                )
            };
            tensors.insert(key("A"), (vec![r, i], values(r * i, 1, 0.1)));
            tensors.insert(key("B"), (vec![o, r], values(o * r, 2, 0.1)));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write_adapter(dir.path(), &config, &tensors, dtype);
    read_base(dir.path(), model)
}

fn read_base(dir: &Path, model: &LlamaConfig) -> Base {
    Base {
        model: model.clone(),
        config: std::fs::read(dir.join("adapter_config.json")).unwrap(),
        weights: std::fs::read(dir.join("adapter_model.safetensors")).unwrap(),
    }
}

/// Valid adapters to mutate, built once.
fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        use LoraTarget::*;
        let tiny = tiny_config(2, true, RopeScaling::None);
        let mut out = vec![
            written(
                &tiny,
                json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                    "target_modules": ["q_proj", "v_proj"]}),
                4,
                &[Q, V],
                &[0, 1],
                Dtype::F32,
            ),
            written(
                &tiny,
                json!({"r": 8, "lora_alpha": 16, "use_rslora": true, "target_modules": "all-linear",
                    "layers_to_transform": [1]}),
                8,
                &LoraTarget::ALL,
                &[1],
                Dtype::F16,
            ),
            written(
                &tiny,
                json!({"r": 2, "lora_alpha": 2.5, "target_modules": r".*\.mlp\.(gate|up)_proj",
                    "bias": "none", "rank_pattern": {}, "modules_to_save": null}),
                2,
                &[Gate, Up],
                &[0, 1],
                Dtype::BF16,
            ),
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (fixture, adapters) in [
            ("tiny-gqa-tied", ["a-qv", "b-all"]),
            ("tiny-mha-untied", ["c-mlp", "d-attn-rslora"]),
        ] {
            let model_dir = root.join(fixture).join("model");
            let model = parse_config(
                &model_dir.join("config.json"),
                &model_dir.join("generation_config.json"),
            )
            .unwrap();
            for a in adapters {
                out.push(read_base(
                    &root.join(fixture).join("adapters").join(a),
                    &model,
                ));
            }
        }
        out
    })
}

/// An edit of the config or of the weights.
#[derive(Debug, Clone)]
enum AdapterEdit {
    Config(Vec<JsonOp>),
    Weights(SafetensorsOp),
}

fn adapter_edit() -> impl Strategy<Value = AdapterEdit> {
    prop_oneof![
        1 => proptest::collection::vec(json_op(), 1..4).prop_map(AdapterEdit::Config),
        1 => safetensors_op().prop_map(AdapterEdit::Weights),
    ]
}

fn apply_edits(base: &Base, edits: &[AdapterEdit]) -> Base {
    let mut b = base.clone();
    for e in edits {
        match e {
            AdapterEdit::Config(ops) => {
                // A config an earlier edit left unparseable stays as it is.
                if let Ok(doc) = serde_json::from_slice::<Value>(&b.config) {
                    b.config = mutate_json(&doc, ops);
                }
            }
            AdapterEdit::Weights(op) => {
                let header_parses = b.weights.len() >= 8 && {
                    let n = u64::from_le_bytes(b.weights[..8].try_into().unwrap()) as usize;
                    b.weights
                        .get(8..8 + n)
                        .is_some_and(|h| serde_json::from_slice::<Value>(h).is_ok())
                };
                if header_parses || matches!(op, SafetensorsOp::Bytes(_)) {
                    b.weights = mutate_safetensors(&b.weights, op);
                }
            }
        }
    }
    b
}

/// What an accepted adapter must satisfy.
fn check_adapter(a: &Adapter, model: &LlamaConfig) -> Result<(), TestCaseError> {
    let r = a.config.r;
    prop_assert!(a.config.scaling().is_finite(), "{:?}", a.config);
    prop_assert!(!a.modules.is_empty());
    for layer in 0..model.num_hidden_layers {
        for t in LoraTarget::ALL {
            prop_assert_eq!(
                a.modules.contains_key(&(layer, t)),
                a.config.targets(layer, t),
                "layer {} {}",
                layer,
                t
            );
        }
    }
    for (&(layer, t), pair) in &a.modules {
        prop_assert!(layer < model.num_hidden_layers);
        let (i, o) = t.dims(model);
        prop_assert_eq!(&pair.a.shape, &vec![r, i]);
        prop_assert_eq!(&pair.b.shape, &vec![o, r]);
        prop_assert_eq!(pair.a.data.len(), r * i);
        prop_assert_eq!(pair.b.data.len(), o * r);
    }
    Ok(())
}

/// The unedited adapter of the same model, to stack an accepted one with.
fn partner(model: &LlamaConfig) -> &'static Adapter {
    static PARTNERS: OnceLock<Vec<(LlamaConfig, Adapter)>> = OnceLock::new();
    let partners = PARTNERS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut out: Vec<(LlamaConfig, Adapter)> = Vec::new();
        for b in bases() {
            if out.iter().all(|(m, _)| *m != b.model) {
                write(dir.path(), b);
                out.push((
                    b.model.clone(),
                    Adapter::load(dir.path(), &b.model).unwrap(),
                ));
            }
        }
        out
    });
    &partners.iter().find(|(m, _)| m == model).unwrap().1
}

fn write(dir: &Path, b: &Base) {
    replace_file(&dir.join("adapter_config.json"), &b.config);
    replace_file(&dir.join("adapter_model.safetensors"), &b.weights);
}

/// Writes `b` to `dir`, loads and (when accepted) stacks it under the tracker, checks the outcome.
fn load(dir: &Path, b: &Base) -> Result<Outcome, TestCaseError> {
    write(dir, b);
    let input = b.config.len() + b.weights.len();
    let (r, usage) = measure(|| Adapter::load(dir, &b.model));
    let r = no_panic("Adapter::load", r)?;
    BOUND.check("Adapter::load", input, usage)?;
    let rejected = match r {
        Ok(a) => {
            check_adapter(&a, &b.model)?;
            let other = partner(&b.model);
            let pair = [
                ("fuzzed".to_string(), a),
                ("base".to_string(), other.clone()),
            ];
            let (stacked, usage) =
                measure(|| StackedAdapters::new(&pair, &b.model).map(|s| s.len()));
            let stacked = no_panic("StackedAdapters::new", stacked)?;
            prop_assert_eq!(stacked.ok(), Some(2), "an accepted adapter does not stack");
            BOUND.check("StackedAdapters::new", input, usage)?;
            None
        }
        Err(e) => Some(named_error(&e, &dir.display().to_string())?),
    };
    Ok(Outcome {
        rejected,
        input,
        usage,
    })
}

#[test]
fn valid_adapters_load() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    for b in bases() {
        let o = load(dir.path(), b).unwrap();
        assert!(o.rejected.is_none(), "{:?}", o.rejected);
    }
}

#[test]
fn random_bytes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let bytes = || proptest::collection::vec(any::<u8>(), 0..1024);
    let s = run(
        "adapter random files",
        file!(),
        4_000,
        (
            0..bases().len(),
            proptest::option::of(bytes()),
            proptest::option::of(bytes()),
        ),
        |(i, config, weights)| {
            let mut b = bases()[i].clone();
            b.config = config.unwrap_or(b.config);
            b.weights = weights.unwrap_or(b.weights);
            load(dir.path(), &b)
        },
    );
    assert!(s.rejected > 0);
}

#[test]
fn mutated_adapters() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let s = run(
        "adapter mutated",
        file!(),
        10_000,
        (
            0..bases().len(),
            proptest::collection::vec(adapter_edit(), 1..3),
        ),
        |(i, edits)| load(dir.path(), &apply_edits(&bases()[i], &edits)),
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "mutations all went one way"
    );
}

// ---- regressions the fuzzing found ----

/// A 16-byte `target_modules` pattern compiled under the `regex` crate's default 10 MiB limit,
/// taking an 8 MiB allocation (and tens of milliseconds) before failing or succeeding; and a 1 MiB
/// pattern took 97 MiB to parse before any limit applied.
#[test]
fn hostile_regexes_are_rejected_within_a_small_allocation() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let base = &bases()[2];
    let mut doc: Value = serde_json::from_slice(&base.config).unwrap();
    let too_long = "x".repeat(MAX_REGEX_LEN + 1);
    let too_long_detail = format!(
        "regular expression of {} bytes (at most {MAX_REGEX_LEN})",
        MAX_REGEX_LEN + 1
    );
    // The longest accepted patterns of the costliest atoms: Unicode classes, one after another.
    let words = r"\w".repeat(MAX_REGEX_LEN / 2);
    let classes = r"[\p{L}\p{N}]".repeat(MAX_REGEX_LEN / 13);
    for (pattern, detail) in [
        (r"(?:\w{100}){100}", "exceeds size limit"),
        (r"\w{50000}", "exceeds size limit"),
        (r"[\p{L}\p{N}]{2000}", "exceeds size limit"),
        (words.as_str(), "exceeds size limit"),
        (classes.as_str(), "exceeds size limit"),
        (too_long.as_str(), too_long_detail.as_str()),
    ] {
        doc["target_modules"] = pattern.into();
        let b = Base {
            config: serde_json::to_vec(&doc).unwrap(),
            ..base.clone()
        };
        write(dir.path(), &b);
        let (r, usage) = measure(|| Adapter::load(dir.path(), &b.model));
        let msg = r.unwrap().unwrap_err().to_string();
        assert!(
            msg.contains("adapter_config.json: target_modules: ") && msg.contains(detail),
            "{msg}"
        );
        assert!(
            usage.largest <= 2 << 20 && usage.peak <= 16 << 20,
            "{} bytes: {usage:?}",
            pattern.len()
        );
    }
}

/// `lora_alpha` was checked as an f64 and then narrowed: 1e39 gave an infinite scaling.
#[test]
fn lora_alpha_beyond_f32_is_rejected() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let base = &bases()[0];
    let mut doc: Value = serde_json::from_slice(&base.config).unwrap();
    doc["lora_alpha"] = 1e39.into();
    let b = Base {
        config: serde_json::to_vec(&doc).unwrap(),
        ..base.clone()
    };
    let o = load(dir.path(), &b).unwrap();
    assert_eq!(o.rejected.as_deref(), Some("lora_alpha"));
}
