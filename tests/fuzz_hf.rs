//! Fuzz-style properties of the Hugging Face folder loader (`load_hf`, `parse_config`): random
//! bytes and mutations of valid folders (tiny models written here in F32, F16 and BF16, a sharded
//! one, and the transformers-written fixture with its tokenizer) in `config.json`,
//! `generation_config.json`, `model.safetensors.index.json` (JSON edits: wrong types, absurd
//! numbers, deep nesting, duplicated and reordered keys, text damage) and the safetensors files
//! (edits of the JSON header, with the length prefix kept or fixed, and of the bytes). Nothing may
//! panic; every error names a file of the folder and a field; whatever is accepted has a sane
//! configuration and tensors of the shapes it implies; memory stays within a bound of the folder's
//! size.
//!
//! Bounds (`len` = bytes of every file the loader reads). JSON becomes `serde_json::Value`s of 32
//! bytes, one per node, and a node takes at least 2 bytes of text (`0,`); an array's vector may
//! have twice the capacity it fills, and while it grows the old and new buffers coexist. So one
//! JSON allocation is at most 32 times the text and the document at most 64 times (nesting stops at
//! serde_json's depth limit of 128). Safetensors are mapped, not read; each tensor the
//! configuration asks for is copied out as f32 (at most twice its stored size) after its shape was
//! checked against the configuration and its bytes against the file. The one cost not tied to the
//! input is the list of expected tensors (`expected_tensors`), at most `MAX_LAYERS` (4096) x 9 + 3
//! (name, shape) pairs of 48 bytes, 3 MiB in one vector once it has doubled, plus a 48-byte name
//! each. So: largest allocation at most `32 len + 4 MiB`, held at once at most `64 len + 8 MiB`;
//! `parse_config` alone at most `32 len + 4 KiB` and `64 len + 64 KiB`.

mod fuzz_common;
mod model_common;

use ascend_cold::model::hf::{expected_tensors, load_hf, parse_config};
use ascend_cold::model::{LlamaConfig, ModelFiles};
use fuzz_common::*;
use model_common::{safetensors_bytes, tiny_files, write_hf};
use proptest::prelude::*;
use safetensors::Dtype;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const LOAD_BOUND: Bound = Bound {
    largest_factor: 32,
    largest_const: 4 << 20,
    peak_factor: 64,
    peak_const: 8 << 20,
};

const CONFIG_BOUND: Bound = Bound {
    largest_factor: 32,
    largest_const: 4096,
    peak_factor: 64,
    peak_const: 64 << 10,
};

/// A model folder held in memory: file name -> contents.
type Folder = BTreeMap<String, Vec<u8>>;

fn read_folder(dir: &Path) -> Folder {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn generated(kv_heads: usize, tied: bool, dtype: Dtype) -> Folder {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), &tiny_files(kv_heads, tied, 5), dtype);
    read_folder(dir.path())
}

/// `generated(2, true, F32)` with its tensors split over two shards and an index.
fn sharded() -> Folder {
    let mut folder = generated(2, true, Dtype::F32);
    let files = tiny_files(2, true, 5);
    let mut shards = [BTreeMap::new(), BTreeMap::new()];
    let mut map = serde_json::Map::new();
    for (k, (name, t)) in files.tensors.iter().enumerate() {
        let shard = k % 2;
        shards[shard].insert(name.clone(), (t.shape.clone(), t.data.clone()));
        map.insert(name.clone(), format!("shard-{shard}.safetensors").into());
    }
    folder.remove("model.safetensors");
    for (k, s) in shards.iter().enumerate() {
        folder.insert(
            format!("shard-{k}.safetensors"),
            safetensors_bytes(s, Dtype::F32),
        );
    }
    folder.insert(
        "model.safetensors.index.json".into(),
        serde_json::to_vec(&serde_json::json!({"metadata": {}, "weight_map": map})).unwrap(),
    );
    folder
}

fn fixture() -> Folder {
    read_folder(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gqa-tied/model"))
}

/// The valid folders every mutation starts from, built once.
fn bases() -> &'static [Folder] {
    static BASES: OnceLock<Vec<Folder>> = OnceLock::new();
    BASES.get_or_init(|| {
        vec![
            generated(2, true, Dtype::F32),
            generated(4, false, Dtype::F16),
            generated(1, true, Dtype::BF16),
            sharded(),
            fixture(),
        ]
    })
}

/// Replaces the folder in `dir` by `folder`.
fn write_folder(dir: &Path, folder: &Folder) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (name, bytes) in folder {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// An edit of one file of a folder.
#[derive(Debug, Clone)]
enum FolderEdit {
    Config(Vec<JsonOp>),
    Generation(Vec<JsonOp>),
    Index(Vec<JsonOp>),
    /// Edits the first safetensors file (by name).
    Safetensors(SafetensorsOp),
}

fn json_ops() -> impl Strategy<Value = Vec<JsonOp>> {
    proptest::collection::vec(json_op(), 1..4)
}

fn folder_edit() -> impl Strategy<Value = FolderEdit> {
    prop_oneof![
        3 => json_ops().prop_map(FolderEdit::Config),
        1 => json_ops().prop_map(FolderEdit::Generation),
        1 => json_ops().prop_map(FolderEdit::Index),
        4 => safetensors_op().prop_map(FolderEdit::Safetensors),
    ]
}

fn edit_json(folder: &mut Folder, name: &str, default: &str, ops: &[JsonOp]) {
    let text = folder
        .get(name)
        .cloned()
        .unwrap_or_else(|| default.as_bytes().to_vec());
    // A file an earlier edit left unparseable stays as it is.
    if let Ok(doc) = serde_json::from_slice::<Value>(&text) {
        folder.insert(name.to_string(), mutate_json(&doc, ops));
    }
}

fn apply_edits(base: &Folder, edits: &[FolderEdit]) -> Folder {
    let mut folder = base.clone();
    for e in edits {
        match e {
            FolderEdit::Config(ops) => edit_json(&mut folder, "config.json", "{}", ops),
            FolderEdit::Generation(ops) => edit_json(
                &mut folder,
                "generation_config.json",
                r#"{"eos_token_id": 1}"#,
                ops,
            ),
            FolderEdit::Index(ops) if folder.contains_key("model.safetensors.index.json") => {
                edit_json(&mut folder, "model.safetensors.index.json", "{}", ops)
            }
            FolderEdit::Index(_) => {}
            FolderEdit::Safetensors(op) => {
                let name = folder
                    .keys()
                    .find(|n| n.ends_with(".safetensors"))
                    .cloned()
                    .unwrap();
                // Only a header that still parses can be edited as JSON.
                let file = &folder[&name];
                let parses = file.len() >= 8 && {
                    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
                    file.get(8..8 + n)
                        .is_some_and(|h| serde_json::from_slice::<Value>(h).is_ok())
                };
                if parses || matches!(op, SafetensorsOp::Bytes(_)) {
                    let edited = mutate_safetensors(file, op);
                    folder.insert(name, edited);
                }
            }
        }
    }
    folder
}

/// What a loaded model must satisfy: a sane configuration, and every tensor it implies present
/// (the LM head may be the embedding) with that shape and as many values.
fn check_model(m: &ModelFiles) -> Result<(), TestCaseError> {
    check_config(&m.config)?;
    for (name, shape) in expected_tensors(&m.config) {
        match m.tensors.get(&name) {
            Some(t) => {
                prop_assert_eq!(&t.shape, &shape, "{}", name);
                prop_assert_eq!(t.data.len(), shape.iter().product::<usize>(), "{}", name);
            }
            None => prop_assert!(
                name == "lm_head.weight" && m.config.tie_word_embeddings,
                "{} missing",
                name
            ),
        }
    }
    Ok(())
}

fn check_config(c: &LlamaConfig) -> Result<(), TestCaseError> {
    for x in [c.rms_norm_eps, c.rope_theta] {
        prop_assert!(x.is_finite() && x > 0.0, "{:?}", c);
    }
    if let ascend_cold::model::RopeScaling::Linear { factor } = c.rope_scaling {
        prop_assert!(factor.is_finite() && factor > 0.0, "{:?}", c);
    }
    if let ascend_cold::model::RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        ..
    } = c.rope_scaling
    {
        for x in [factor, low_freq_factor, high_freq_factor] {
            prop_assert!(x.is_finite() && x > 0.0, "{:?}", c);
        }
        prop_assert!(high_freq_factor > low_freq_factor, "{:?}", c);
    }
    prop_assert!(c.num_attention_heads % c.num_key_value_heads == 0);
    prop_assert!(c.head_dim % 2 == 0 && c.head_dim > 0);
    for id in c.bos_token_id.iter().chain(&c.eos_token_ids) {
        prop_assert!((*id as usize) < c.vocab_size);
    }
    Ok(())
}

/// Writes `folder` to `dir`, loads it under the tracker and checks the outcome.
fn load(dir: &Path, folder: &Folder) -> Result<Outcome, TestCaseError> {
    write_folder(dir, folder);
    let input: usize = folder.values().map(Vec::len).sum();
    let (r, usage) = measure(|| load_hf(dir));
    let r = no_panic("load_hf", r)?;
    LOAD_BOUND.check("load_hf", input, usage)?;
    let rejected = match r {
        Ok(m) => {
            check_model(&m)?;
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

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("config.json"), dir.join("generation_config.json"))
}

/// `parse_config` on `config` (and `generation`, when given) under the tracker.
fn config(dir: &Path, config: &[u8], generation: Option<&[u8]>) -> Result<Outcome, TestCaseError> {
    let (path, gen) = paths(dir);
    replace_file(&path, config);
    match generation {
        Some(g) => replace_file(&gen, g),
        None => drop(std::fs::remove_file(&gen)),
    }
    let input = config.len() + generation.map_or(0, <[u8]>::len);
    let (r, usage) = measure(|| parse_config(&path, &gen));
    let r = no_panic("parse_config", r)?;
    CONFIG_BOUND.check("parse_config", input, usage)?;
    let rejected = match r {
        Ok(c) => {
            check_config(&c)?;
            None
        }
        Err(e) => Some(named_error(&e, "config.json")?),
    };
    Ok(Outcome {
        rejected,
        input,
        usage,
    })
}

#[test]
fn valid_folders_load() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    for (i, f) in bases().iter().enumerate() {
        write_folder(dir.path(), f);
        let m = load_hf(dir.path()).unwrap_or_else(|e| panic!("base {i}: {e}"));
        check_model(&m).unwrap();
    }
}

#[test]
fn random_bytes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let bytes = || proptest::collection::vec(any::<u8>(), 0..1024);
    let s = run(
        "hf random config.json",
        file!(),
        5_000,
        (bytes(), proptest::option::of(bytes())),
        |(c, g)| config(dir.path(), &c, g.as_deref()),
    );
    assert!(s.rejected > 0);
    let base = &bases()[0];
    // A random safetensors image, and one whose length prefix is right but whose header is not.
    let image = prop_oneof![
        bytes(),
        bytes().prop_map(|h| {
            let mut b = (h.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(&h);
            b
        }),
    ];
    let s = run("hf random model.safetensors", file!(), 3_000, image, |st| {
        let mut f = base.clone();
        f.insert("model.safetensors".into(), st);
        load(dir.path(), &f)
    });
    assert!(s.rejected > 0);
}

#[test]
fn mutated_config_json() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<(Vec<u8>, Option<Vec<u8>>)> = bases()
        .iter()
        .map(|f| {
            (
                f["config.json"].clone(),
                f.get("generation_config.json").cloned(),
            )
        })
        .collect();
    for (c, g) in &docs {
        let o = config(dir.path(), c, g.as_deref()).unwrap();
        assert!(o.rejected.is_none(), "{:?}", o.rejected);
    }
    let s = run(
        "hf parse_config, mutated",
        file!(),
        10_000,
        (0..docs.len(), json_ops(), proptest::option::of(json_ops())),
        |(i, ops, gen_ops)| {
            let (c, g) = &docs[i];
            let c = mutate_json(&serde_json::from_slice(c).unwrap(), &ops);
            let g = match (g, gen_ops) {
                (Some(g), Some(ops)) => {
                    Some(mutate_json(&serde_json::from_slice(g).unwrap(), &ops))
                }
                (g, _) => g.clone(),
            };
            config(dir.path(), &c, g.as_deref())
        },
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "mutations all went one way"
    );
}

#[test]
fn mutated_folders() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let s = run(
        "hf load_hf, mutated folders",
        file!(),
        5_000,
        (
            0..bases().len(),
            proptest::collection::vec(folder_edit(), 1..3),
        ),
        |(i, edits)| load(dir.path(), &apply_edits(&bases()[i], &edits)),
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "mutations all went one way"
    );
}

// ---- regressions the fuzzing found ----

/// Floats were range-checked as f64 and then narrowed, so `"rms_norm_eps": 1e39` loaded as an
/// infinite epsilon and `1e-50` as zero (and the same for `rope_theta` and the RoPE factors).
#[test]
fn floats_that_do_not_fit_f32_are_rejected() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let base: Value = serde_json::from_slice(&bases()[0]["config.json"]).unwrap();
    let scaling = |factor: f64| {
        serde_json::json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    };
    for (field, value) in [
        ("rms_norm_eps", Value::from(1e39)),
        ("rms_norm_eps", Value::from(1e-50)),
        ("rope_theta", Value::from(3.5e38)),
        ("rope_scaling", scaling(1e39)),
        ("rope_scaling", scaling(1e-46)),
    ] {
        let mut doc = base.clone();
        doc[field] = value;
        let o = config(dir.path(), &serde_json::to_vec(&doc).unwrap(), None).unwrap();
        let class = o
            .rejected
            .unwrap_or_else(|| panic!("{field} accepted: {doc}"));
        assert!(class.starts_with(field), "{class}");
    }
}

/// Data offsets whose end is near `u64::MAX` (eight chained 2^61-byte tensors: each one's size is
/// consistent with its shape) overflowed `safetensors::SafeTensors::read_metadata`'s final length
/// sum: a panic in debug builds, a wrapped comparison in release.
#[test]
fn data_offsets_near_the_top_of_u64_are_rejected() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let size = (1u64 << 61) - 1;
    let mut header = serde_json::Map::new();
    for k in 0..8u64 {
        header.insert(
            format!("huge.{k}"),
            serde_json::json!({"dtype": "U8", "shape": [size],
                "data_offsets": [k * size, (k + 1) * size]}),
        );
    }
    let text = serde_json::to_vec(&header).unwrap();
    let mut st = (text.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(&text);
    let mut folder = bases()[0].clone();
    folder.insert("model.safetensors".into(), st);
    let o = load(dir.path(), &folder).unwrap();
    assert_eq!(o.rejected.as_deref(), Some("header"));
}
