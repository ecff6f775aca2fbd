//! Round trips through files written by the test writer: metadata of every type, versions 2 and 3,
//! custom alignment, and a tiny Llama whose tensors, names, layout, q/k permutation, config and
//! tokenizer must come back as the Hugging Face checkpoint had them.

mod gguf_util;

use ascend_cold::model::config::RopeScaling;
use ascend_cold::model::gguf::{load_gguf, Array, GgmlType, GgufFile, Value};
use gguf_util::{gt, tiny_byte_id, tiny_llama, write_temp, Meta, Writer, TINY};
use rand::{rngs::StdRng, SeedableRng};

#[test]
fn metadata_of_every_type_round_trips() {
    for version in [2u32, 3] {
        let mut w = Writer {
            version,
            alignment: 64,
            ..Writer::default()
        };
        w.kv("general.alignment", Meta::U32(64))
            .kv("u8", Meta::U8(200))
            .kv("i8", Meta::I8(-100))
            .kv("u16", Meta::U16(60000))
            .kv("i16", Meta::I16(-30000))
            .kv("u32", Meta::U32(4_000_000_000))
            .kv("i32", Meta::I32(-2_000_000_000))
            .kv("f32", Meta::F32(1.5))
            .kv("bool", Meta::Bool(true))
            .kv("str", Meta::s("héllo <|im_start|>"))
            .kv("u64", Meta::U64(u64::MAX))
            .kv("i64", Meta::I64(i64::MIN))
            .kv("f64", Meta::F64(-2.25))
            .kv(
                "strs",
                Meta::StrArray(vec!["a".into(), "".into(), "ĠĠ".into()]),
            )
            .kv("i32s", Meta::I32Array(vec![1, -2, 3]))
            .kv("f32s", Meta::F32Array(vec![]))
            .f32_tensor("a", &[3], &[1.0, 2.0, 3.0])
            .f32_tensor("b", &[2, 2], &[4.0, 5.0, 6.0, 7.0]);
        let path = write_temp(&format!("meta-v{version}"), &w.bytes());
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_offset() % 64, 0);
        let g = |k: &str| f.get(k).unwrap().clone();
        assert_eq!(g("u8"), Value::U8(200));
        assert_eq!(g("i8"), Value::I8(-100));
        assert_eq!(g("u16"), Value::U16(60000));
        assert_eq!(g("i16"), Value::I16(-30000));
        assert_eq!(g("u32"), Value::U32(4_000_000_000));
        assert_eq!(g("i32"), Value::I32(-2_000_000_000));
        assert_eq!(g("f32"), Value::F32(1.5));
        assert_eq!(g("bool"), Value::Bool(true));
        assert_eq!(g("str"), Value::String("héllo <|im_start|>".into()));
        assert_eq!(g("u64"), Value::U64(u64::MAX));
        assert_eq!(g("i64"), Value::I64(i64::MIN));
        assert_eq!(g("f64"), Value::F64(-2.25));
        assert_eq!(
            g("strs"),
            Value::Array(Array::String(vec!["a".into(), "".into(), "ĠĠ".into()]))
        );
        assert_eq!(g("i32s"), Value::Array(Array::I32(vec![1, -2, 3])));
        assert_eq!(g("f32s"), Value::Array(Array::F32(vec![])));
        assert_eq!(f.metadata().len(), 16);
        assert_eq!(f.metadata()[1].0, "u8", "file order kept");
        let b = f.tensor("b").unwrap();
        assert_eq!(b.dims, vec![2, 2]);
        assert_eq!(
            b.offset, 64,
            "second tensor starts at the next 64-byte boundary"
        );
        assert_eq!(f.dequantize(b).unwrap(), vec![4.0, 5.0, 6.0, 7.0]);
        assert_eq!(
            f.dequantize(f.tensor("a").unwrap()).unwrap(),
            vec![1.0, 2.0, 3.0]
        );
    }
}

#[test]
fn f32_llama_comes_back_exactly_with_permutation_undone() {
    for tied in [true, false] {
        let mut rng = StdRng::seed_from_u64(7 + tied as u64);
        let (w, expected) = tiny_llama(gt::F32, tied, &mut rng);
        let path = write_temp(&format!("tiny-f32-{tied}"), &w.bytes());
        let m = load_gguf(&path).unwrap();
        assert_eq!(m.tensors.len(), expected.len());
        for (name, (shape, values)) in &expected {
            let t = m
                .tensors
                .get(name)
                .unwrap_or_else(|| panic!("missing {name}"));
            assert_eq!(&t.shape, shape, "{name}");
            assert!(t.data == *values, "{name}: values differ from the original");
        }
        assert_eq!(m.config.tie_word_embeddings, tied);
        assert_eq!(m.tensors.contains_key("lm_head.weight"), !tied);
    }
}

#[test]
fn quantized_llamas_match_the_reference_decoder() {
    for (store, name) in [
        (gt::F16, "F16"),
        (gt::BF16, "BF16"),
        (gt::Q8_0, "Q8_0"),
        (gt::Q4_0, "Q4_0"),
        (gt::Q4_1, "Q4_1"),
        (gt::Q5_0, "Q5_0"),
        (gt::Q5_1, "Q5_1"),
    ] {
        let mut rng = StdRng::seed_from_u64(store as u64);
        let (w, expected) = tiny_llama(store, false, &mut rng);
        let path = write_temp(&format!("tiny-{name}"), &w.bytes());
        let m = load_gguf(&path).unwrap();
        for (hf, (shape, values)) in &expected {
            let t = &m.tensors[hf];
            assert_eq!(&t.shape, shape, "{name} {hf}");
            let same = t
                .data
                .iter()
                .zip(values)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{name} {hf}: values differ from the reference decoder"
            );
        }
        assert!(m.source.contains(&format!("{name} x")), "{}", m.source);
    }
}

#[test]
fn config_comes_from_llama_metadata() {
    let mut rng = StdRng::seed_from_u64(1);
    let (mut w, _) = tiny_llama(gt::F32, true, &mut rng);
    w.kv("llama.rope.scaling.type", Meta::s("linear"))
        .kv("llama.rope.scaling.factor", Meta::F32(4.0))
        .kv("tokenizer.ggml.eot_token_id", Meta::U32(0));
    let path = write_temp("tiny-config", &w.bytes());
    let c = load_gguf(&path).unwrap().config;
    assert_eq!(c.hidden_size, TINY.hidden);
    assert_eq!(c.intermediate_size, TINY.ffn);
    assert_eq!(c.num_hidden_layers, TINY.layers);
    assert_eq!(c.num_attention_heads, TINY.heads);
    assert_eq!(c.num_key_value_heads, TINY.kv_heads);
    assert_eq!(c.head_dim, TINY.hidden / TINY.heads);
    assert_eq!(c.vocab_size, gguf_util::tiny_vocab().0.len());
    assert_eq!(c.max_position_embeddings, 256);
    assert_eq!(c.rms_norm_eps, 1e-6);
    assert_eq!(c.rope_theta, 50000.0);
    assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 4.0 });
    assert_eq!(c.bos_token_id, Some(1));
    assert_eq!(c.eos_token_ids, vec![2, 0]);
}

#[test]
fn tokenizer_is_rebuilt_from_metadata() {
    let mut rng = StdRng::seed_from_u64(2);
    let (mut w, _) = tiny_llama(gt::F32, true, &mut rng);
    let path = write_temp("tiny-tok-smollm", &w.bytes());
    let files = load_gguf(&path).unwrap().tokenizer.unwrap();
    assert_eq!(files.chat_template.as_deref(), Some("{{ messages }}"));
    let tok = &files.tokenizer;
    let (tokens, _, _) = gguf_util::tiny_vocab();
    let id = |s: &str| tokens.iter().position(|t| t == s).unwrap() as u32;
    let enc = tok
        .encode("<|im_start|>hello world 12<tool>", false)
        .unwrap();
    let mut want = vec![1, id("hello"), id("Ġw")];
    want.extend(b"orld".iter().map(|&b| tiny_byte_id(b)));
    // smollm splits every digit: no "12" merge.
    want.extend([id("Ġ"), tiny_byte_id(b'1'), tiny_byte_id(b'2'), 3]);
    assert_eq!(enc.get_ids(), want.as_slice());
    assert_eq!(
        tok.decode(enc.get_ids(), false).unwrap(),
        "<|im_start|>hello world 12<tool>"
    );
    // CONTROL tokens are special (skipped on request), USER_DEFINED ones are not.
    assert_eq!(
        tok.decode(enc.get_ids(), true).unwrap(),
        "hello world 12<tool>"
    );

    // With the GPT-2 pre-tokenizer, digits stay together and the "1 2" merge applies.
    for kv in w.kvs.iter_mut() {
        if kv.0 == b"tokenizer.ggml.pre" {
            kv.1 = Meta::s("gpt2");
        }
    }
    w.kv("tokenizer.ggml.add_bos_token", Meta::Bool(true));
    let path = write_temp("tiny-tok-gpt2", &w.bytes());
    let tok = load_gguf(&path).unwrap().tokenizer.unwrap().tokenizer;
    let enc = tok.encode("12", true).unwrap();
    assert_eq!(enc.get_ids(), &[1, id("12")], "BOS added, digits merged");
}

#[test]
fn tensor_types_are_reported() {
    let mut w = Writer::default();
    w.tensor("q", &[64, 2], gt::Q4_1, vec![0; 80]);
    let f = GgufFile::from_bytes("mem.gguf", w.bytes()).unwrap();
    let t = &f.tensors()[0];
    assert_eq!(t.ggml_type, GgmlType::Q4_1);
    assert_eq!((t.n_elements, t.n_bytes), (128, 80));
    assert_eq!(t.shape(), vec![2, 64]);
}

#[test]
fn file_without_tokenizer_sizes_the_vocabulary_from_the_embedding() {
    let mut rng = StdRng::seed_from_u64(9);
    let (mut w, expected) = tiny_llama(gt::Q8_0, false, &mut rng);
    w.kvs.retain(|kv| !kv.0.starts_with(b"tokenizer."));
    w.version = 2;
    let path = write_temp("tiny-no-tokenizer", &w.bytes());
    let m = load_gguf(&path).unwrap();
    assert!(m.tokenizer.is_none());
    assert_eq!(
        m.config.vocab_size,
        expected["model.embed_tokens.weight"].0[0]
    );
    assert_eq!(m.config.bos_token_id, None);
    assert!(m.config.eos_token_ids.is_empty());
    assert!(
        m.source
            .starts_with("GGUF v2 tiny-no-tokenizer.gguf 'tiny'"),
        "{}",
        m.source
    );
}

#[test]
fn a_foreign_tensor_info_is_an_error_not_a_panic() {
    let mut w = Writer::default();
    w.f32_tensor("a", &[2], &[1.0, 2.0]);
    let f = GgufFile::from_bytes("mem.gguf", w.bytes()).unwrap();
    let mut info = f.tensors()[0].clone();
    info.offset = u64::MAX - 3;
    assert!(f.tensor_bytes(&info).is_empty());
    let e = f.dequantize(&info).unwrap_err().to_string();
    assert!(e.contains("does not belong to this file"), "{e}");
}
