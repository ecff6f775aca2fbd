//! Hostile and malformed Hugging Face folders and PEFT adapters: each is a clear error naming the
//! file and the field (never a panic), through the library and through `ascend-cold inspect`.

mod model_common;

use ascend_cold::model::hf::load_hf;
use ascend_cold::model::{Adapter, LlamaModel, LoraTarget, WeightDtype};
use ascend_cold::Error;
use model_common::*;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn good_folder(dtype: Dtype) -> (tempfile::TempDir, ascend_cold::model::ModelFiles) {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_files(2, true, 21);
    write_hf(dir.path(), &files, dtype);
    (dir, files)
}

/// Assert `r` is `InvalidFile` for the file `file_name` and a field containing `field`, and that the
/// message contains every one of `details`.
#[track_caller]
fn assert_invalid<T>(r: ascend_cold::Result<T>, file_name: &str, field: &str, details: &[&str]) {
    match r {
        Err(Error::InvalidFile {
            path,
            field: f,
            detail,
        }) => {
            assert_eq!(
                path.file_name().unwrap().to_str().unwrap(),
                file_name,
                "{f}: {detail}"
            );
            assert!(
                f.contains(field),
                "field {f:?} does not contain {field:?} ({detail})"
            );
            let msg = format!("{f}: {detail}");
            for d in details {
                assert!(msg.contains(d), "{msg:?} does not contain {d:?}");
            }
        }
        Err(other) => panic!("expected InvalidFile({file_name}, {field}), got {other:?}"),
        Ok(_) => panic!("expected InvalidFile({file_name}, {field}), got Ok"),
    }
}

#[test]
fn f32_f16_bf16_and_sharded_folders_load() {
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let (dir, files) = good_folder(dtype);
        let loaded = load_hf(dir.path()).unwrap();
        assert_eq!(loaded.config, files.config);
        let name = "model.layers.1.mlp.down_proj.weight";
        let (a, b) = (&loaded.tensors[name].data, &files.tensors[name].data);
        let tol = match dtype {
            Dtype::F32 => 0.0,
            Dtype::F16 => 1e-3,
            _ => 8e-3,
        };
        assert!(
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= tol * y.abs().max(1e-2)),
            "{dtype:?}"
        );
        assert!(
            loaded.source.contains(&format!("{dtype:?}")),
            "{}",
            loaded.source
        );
        LlamaModel::new(&loaded, WeightDtype::F32).unwrap();
    }
    // Sharded: split the tensors over two files and an index.
    let (dir, files) = good_folder(Dtype::F32);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let mut shards = [BTreeMap::new(), BTreeMap::new()];
    let mut map = serde_json::Map::new();
    for (i, (n, t)) in files.tensors.iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        shards[i % 2].insert(n.clone(), (t.shape.clone(), t.data.clone()));
        map.insert(n.clone(), file.into());
    }
    for (i, s) in shards.iter().enumerate() {
        std::fs::write(
            dir.path()
                .join(format!("model-0000{}-of-00002.safetensors", i + 1)),
            safetensors_bytes(s, Dtype::F32),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"weight_map": map}).to_string(),
    )
    .unwrap();
    let loaded = load_hf(dir.path()).unwrap();
    assert_eq!(loaded.tensors, files.tensors);
    assert!(loaded.source.contains("2 files"));
}

fn rewrite(path: &Path, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, f(bytes)).unwrap();
}

/// A safetensors file from a raw header and data.
fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn hostile_safetensors_files_are_named_errors() {
    let (dir, _) = good_folder(Dtype::F32);
    let st = dir.path().join("model.safetensors");
    let original = std::fs::read(&st).unwrap();

    // Truncated data, truncated header, too short for the length prefix.
    for cut in [original.len() - 1, 20, 3, 0] {
        std::fs::write(&st, &original[..cut]).unwrap();
        assert_invalid(load_hf(dir.path()), "model.safetensors", "header", &[]);
    }
    // Header length far past the end (absurd size): rejected before any allocation.
    let mut bad = original.clone();
    bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&st, &bad).unwrap();
    assert_invalid(load_hf(dir.path()), "model.safetensors", "header", &[]);
    // Not JSON; unknown dtype; offsets past the end; absurd dimensions.
    let cases = [
        raw_safetensors("{not json", &[]),
        raw_safetensors(
            r#"{"x":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
        raw_safetensors(
            r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4000]}}"#,
            &[0; 4],
        ),
        raw_safetensors(
            r#"{"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
    ];
    for bytes in cases {
        std::fs::write(&st, &bytes).unwrap();
        assert_invalid(load_hf(dir.path()), "model.safetensors", "header", &[]);
    }
    std::fs::write(&st, &original).unwrap();
    load_hf(dir.path()).unwrap();
}

fn retensor(
    dir: &Path,
    f: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<f32>)>),
    dtype: Dtype,
) {
    let files = load_hf(dir).unwrap();
    let mut t: BTreeMap<String, (Vec<usize>, Vec<f32>)> = files
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), (t.shape.clone(), t.data.clone())))
        .collect();
    f(&mut t);
    std::fs::write(dir.join("model.safetensors"), safetensors_bytes(&t, dtype)).unwrap();
}

#[test]
fn tensors_not_matching_the_config_are_named_errors() {
    let name = "model.layers.1.self_attn.k_proj.weight";
    // Missing.
    let (dir, _) = good_folder(Dtype::F32);
    retensor(dir.path(), |t| drop(t.remove(name)), Dtype::F32);
    assert_invalid(load_hf(dir.path()), "model.safetensors", name, &["missing"]);
    // Wrong shape: expected [16, 32] (2 kv heads x 8, hidden 32).
    let (dir, _) = good_folder(Dtype::F32);
    retensor(
        dir.path(),
        |t| drop(t.insert(name.into(), (vec![32, 16], vec![0.0; 512]))),
        Dtype::F32,
    );
    assert_invalid(
        load_hf(dir.path()),
        "model.safetensors",
        name,
        &["[32, 16]", "[16, 32]"],
    );
    // Unsupported (but valid safetensors) dtype.
    let (dir, _) = good_folder(Dtype::F32);
    let mut header = String::from("{");
    header += &format!(r#""{name}":{{"dtype":"I32","shape":[16,32],"data_offsets":[0,2048]}}"#);
    header += "}";
    std::fs::write(
        dir.path().join("model.safetensors"),
        raw_safetensors(&header, &[0; 2048]),
    )
    .unwrap();
    // The first tensor the loader asks for is the embedding, which is now missing.
    assert_invalid(
        load_hf(dir.path()),
        "model.safetensors",
        "model.embed_tokens.weight",
        &["missing"],
    );
    let (dir, files) = good_folder(Dtype::F32);
    let mut t: BTreeMap<String, (Vec<usize>, Vec<f32>)> = files
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), (t.shape.clone(), t.data.clone())))
        .collect();
    t.remove(name);
    let mut bytes = safetensors_bytes(&t, Dtype::F32);
    // Re-emit with one I32 tensor appended: rebuild the header by hand.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut head: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data_len = bytes.len() - 8 - n;
    head[name] = serde_json::json!({"dtype": "I32", "shape": [16, 32], "data_offsets": [data_len, data_len + 2048]});
    let mut data = bytes.split_off(8 + n);
    data.extend_from_slice(&[0; 2048]);
    std::fs::write(
        dir.path().join("model.safetensors"),
        raw_safetensors(&head.to_string(), &data),
    )
    .unwrap();
    assert_invalid(
        load_hf(dir.path()),
        "model.safetensors",
        "dtype",
        &[name, "I32"],
    );
}

#[test]
fn hostile_config_json_is_a_named_error() {
    let cases: [(&str, serde_json::Value, &str); 10] = [
        ("vocab_size", serde_json::Value::Null, "missing"),
        ("vocab_size", 1_000_000_000_000u64.into(), "expected 1..="),
        ("hidden_size", (-3).into(), "non-negative integer"),
        ("hidden_size", "32".into(), "non-negative integer"),
        ("num_key_value_heads", 3.into(), "does not divide"),
        ("head_dim", 7.into(), "even"),
        ("model_type", "gpt2".into(), "llama"),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
            "not supported",
        ),
        ("rms_norm_eps", (-1.0).into(), "positive"),
        ("eos_token_id", serde_json::json!([1, 4000]), "vocab_size"),
    ];
    for (field, value, detail) in cases {
        let (dir, _) = good_folder(Dtype::F32);
        let path = dir.path().join("config.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if value.is_null() {
            json.as_object_mut().unwrap().remove(field);
        } else {
            json[field] = value;
        }
        std::fs::write(&path, json.to_string()).unwrap();
        assert_invalid(load_hf(dir.path()), "config.json", field, &[detail]);
    }
    let (dir, _) = good_folder(Dtype::F32);
    rewrite(&dir.path().join("config.json"), |b| {
        b[..b.len() / 2].to_vec()
    });
    assert_invalid(load_hf(dir.path()), "config.json", "json", &[]);
    rewrite(&dir.path().join("config.json"), |_| vec![0xff, 0xfe, b'{']);
    assert_invalid(load_hf(dir.path()), "config.json", "json", &[]);
}

#[test]
fn config_variants_are_understood() {
    let (dir, _) = good_folder(Dtype::F32);
    let path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let obj = json.as_object_mut().unwrap();
    obj.remove("head_dim");
    obj.remove("rope_theta");
    obj.insert(
        "rope_parameters".into(),
        serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    );
    obj.insert("eos_token_id".into(), serde_json::json!([1, 2]));
    std::fs::write(&path, json.to_string()).unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [2, 3]}"#,
    )
    .unwrap();
    let c = load_hf(dir.path()).unwrap().config;
    assert_eq!(c.head_dim, 8); // hidden 32 / 4 heads
    assert_eq!(c.rope_theta, 500000.0);
    assert_eq!(c.eos_token_ids, vec![1, 2, 3]);
    assert!(matches!(
        c.rope_scaling,
        ascend_cold::model::RopeScaling::Llama3 {
            original_max_position_embeddings: 16,
            ..
        }
    ));
}

#[test]
fn hostile_index_json_is_a_named_error() {
    let (dir, _) = good_folder(Dtype::F32);
    std::fs::rename(
        dir.path().join("model.safetensors"),
        dir.path().join("shard.safetensors"),
    )
    .unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(
        &index,
        r#"{"weight_map": {"model.embed_tokens.weight": "../../etc/passwd"}}"#,
    )
    .unwrap();
    assert_invalid(
        load_hf(dir.path()),
        "model.safetensors.index.json",
        "weight_map.model.embed_tokens.weight",
        &["plain file name"],
    );
    std::fs::write(
        &index,
        r#"{"weight_map": {"model.embed_tokens.weight": "shard.safetensors"}}"#,
    )
    .unwrap();
    assert_invalid(
        load_hf(dir.path()),
        "model.safetensors.index.json",
        "weight_map.model.layers.0.input_layernorm.weight",
        &["missing"],
    );
    std::fs::write(&index, r#"{"weight_map": 5}"#).unwrap();
    assert_invalid(
        load_hf(dir.path()),
        "model.safetensors.index.json",
        "weight_map",
        &[],
    );
    std::fs::remove_file(&index).unwrap();
    assert_invalid(
        load_hf(dir.path()),
        &dir.path().file_name().unwrap().to_string_lossy(),
        "model.safetensors",
        &["neither"],
    );
}

#[test]
fn bad_tokenizer_json_is_a_named_error() {
    let (dir, _) = good_folder(Dtype::F32);
    std::fs::write(dir.path().join("tokenizer.json"), b"{\"model\": 12").unwrap();
    assert_invalid(load_hf(dir.path()), "tokenizer.json", "tokenizer", &[]);
}

// ---- adapters ----

fn adapter_tensors(
    c: &ascend_cold::model::LlamaConfig,
    r: usize,
    targets: &[LoraTarget],
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut t = BTreeMap::new();
    for l in 0..c.num_hidden_layers {
        for &m in targets {
            let (i, o) = m.dims(c);
            t.insert(
                format!(
                    "base_model.model.model.layers.{l}.{}.lora_A.weight",
                    m.module_path()
                ),
                (vec![r, i], values(r * i, 1, 0.1)),
            );
            t.insert(
                format!(
                    "base_model.model.model.layers.{l}.{}.lora_B.weight",
                    m.module_path()
                ),
                (vec![o, r], values(o * r, 2, 0.1)),
            );
        }
    }
    t
}

fn qv_config() -> serde_json::Value {
    serde_json::json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "fan_in_fan_out": false})
}

#[test]
fn hostile_adapters_are_named_errors() {
    let c = tiny_config(2, true, ascend_cold::model::RopeScaling::None);
    let qv = [LoraTarget::Q, LoraTarget::V];
    let key = |l: usize, m: &str, ab: &str| {
        format!("base_model.model.model.layers.{l}.{m}.lora_{ab}.weight")
    };
    let run = |cfg: serde_json::Value, t: BTreeMap<String, (Vec<usize>, Vec<f32>)>| {
        let dir = tempfile::tempdir().unwrap();
        write_adapter(dir.path(), &cfg, &t, Dtype::F32);
        Adapter::load(dir.path(), &c)
    };
    // Good, and a regex target_modules selecting the same modules.
    run(qv_config(), adapter_tensors(&c, 4, &qv)).unwrap();
    let mut re = qv_config();
    re["target_modules"] = r".*\.(q_proj|v_proj)".into();
    run(re, adapter_tensors(&c, 4, &qv)).unwrap();

    // Rank mismatch: the file has rank 3, the config says 4.
    let k = key(0, "self_attn.q_proj", "A");
    assert_invalid(
        run(qv_config(), adapter_tensors(&c, 3, &qv)),
        "adapter_model.safetensors",
        "lora_A",
        &["[3, 32]", "[4, 32]"],
    );
    // An adapter for a wider model.
    let mut wide = c.clone();
    wide.hidden_size = 64;
    assert_invalid(
        run(qv_config(), adapter_tensors(&wide, 4, &qv)),
        "adapter_model.safetensors",
        "",
        &["[4, 64]", "[4, 32]"],
    );
    // A layer the model does not have.
    let mut deep = c.clone();
    deep.num_hidden_layers = 3;
    assert_invalid(
        run(qv_config(), adapter_tensors(&deep, 4, &qv)),
        "adapter_model.safetensors",
        "layers.2",
        &["2 layers"],
    );
    // A module not in target_modules.
    assert_invalid(
        run(
            qv_config(),
            adapter_tensors(&c, 4, &[LoraTarget::Q, LoraTarget::V, LoraTarget::O]),
        ),
        "adapter_model.safetensors",
        "o_proj",
        &["target_modules"],
    );
    // A missing half.
    let mut t = adapter_tensors(&c, 4, &qv);
    t.remove(&key(1, "self_attn.v_proj", "B"));
    assert_invalid(
        run(qv_config(), t),
        "adapter_model.safetensors",
        &key(1, "self_attn.v_proj", "B"),
        &["missing"],
    );
    // Not a projection LoRA weight (e.g. an LM-head adapter).
    let mut t = adapter_tensors(&c, 4, &qv);
    t.insert(
        "base_model.model.lm_head.lora_A.weight".into(),
        (vec![4, 32], vec![0.0; 128]),
    );
    assert_invalid(
        run(qv_config(), t),
        "adapter_model.safetensors",
        "lm_head",
        &["not a LoRA weight"],
    );
    // Unsupported or malformed configs.
    let cfg_cases: [(&str, serde_json::Value, &str); 7] = [
        ("fan_in_fan_out", true.into(), "not supported"),
        ("use_dora", true.into(), "not supported"),
        ("r", 0.into(), "1..="),
        ("lora_alpha", "x".into(), "finite number"),
        (
            "target_modules",
            serde_json::json!(["q_proj", "lm_head"]),
            "lm_head",
        ),
        ("target_modules", "([".into(), "regular expression"),
        (
            "rank_pattern",
            serde_json::json!({"q_proj": 8}),
            "not supported",
        ),
    ];
    for (field, value, detail) in cfg_cases {
        let mut cfg = qv_config();
        cfg[field] = value;
        assert_invalid(
            run(cfg, adapter_tensors(&c, 4, &qv)),
            "adapter_config.json",
            field,
            &[detail],
        );
    }
    // Truncated weights file.
    let dir = tempfile::tempdir().unwrap();
    write_adapter(
        dir.path(),
        &qv_config(),
        &adapter_tensors(&c, 4, &qv),
        Dtype::F32,
    );
    rewrite(&dir.path().join("adapter_model.safetensors"), |b| {
        b[..b.len() - 10].to_vec()
    });
    assert_invalid(
        Adapter::load(dir.path(), &c),
        "adapter_model.safetensors",
        "header",
        &[],
    );
    let _ = k;
}

// ---- through the CLI ----

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ascend-cold"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn inspect_reports_model_adapters_and_misfits() {
    let (dir, files) = good_folder(Dtype::BF16);
    let c = &files.config;
    let good: PathBuf = dir.path().join("ad-good");
    write_adapter(
        &good,
        &qv_config(),
        &adapter_tensors(c, 4, &[LoraTarget::Q, LoraTarget::V]),
        Dtype::F32,
    );
    let out = cli(&[
        "inspect",
        "--model",
        dir.path().to_str().unwrap(),
        "--adapter",
        &format!("good={}", good.display()),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "2 layers",
        "GQA",
        "tied",
        "BF16",
        "rank 4",
        "scaling 2",
        "q_proj, v_proj",
        "fits: yes",
        "merged copies",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    // An adapter of another rank in its weights: reported, exit code 2.
    let bad = dir.path().join("ad-bad");
    write_adapter(
        &bad,
        &qv_config(),
        &adapter_tensors(c, 3, &[LoraTarget::Q, LoraTarget::V]),
        Dtype::F32,
    );
    let out = cli(&[
        "inspect",
        "--model",
        dir.path().to_str().unwrap(),
        "--adapter",
        &format!("bad={}", bad.display()),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("fits: NO")
            && stdout.contains("lora_A.weight")
            && stdout.contains("[3, 32]"),
        "{stdout}"
    );
    // A hostile model: exit 1, the file and field on stderr.
    rewrite(&dir.path().join("model.safetensors"), |b| b[..100].to_vec());
    let out = cli(&["inspect", "--model", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("model.safetensors") && stderr.contains("header"),
        "{stderr}"
    );
    // A GGUF path that does not exist: exit 1, naming the file.
    let out = cli(&["inspect", "--model", "nowhere/model.gguf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere/model.gguf"));
}
