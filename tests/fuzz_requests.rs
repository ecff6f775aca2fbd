//! Fuzz-style properties of the requests JSONL parser (`decode::requests`: `RequestLine::parse`,
//! `read_request_lines`, `RequestLine::into_request`): random bytes and mutations of valid lines
//! (truncation, byte flips, huge numbers and strings, deep nesting, invalid UTF-8, wrong types,
//! duplicate and unknown members) never panic; every error is an `InvalidFile` naming the file, the
//! line and a field; a valid line is accepted as what it says; memory stays within a bound of the
//! input size.
//!
//! Bound: the reader holds one line (at most the input, at most twice it while its buffer grows),
//! and parsing holds the line's fields. The densest field is `stop`: a `""` and a comma (3 bytes)
//! become a 24-byte `String`, 8 bytes a byte, and a vector's capacity may double: 16 bytes a byte
//! for the largest allocation. An error may quote a value (at most the input) with its path. So the
//! largest single allocation is at most `16 len + 4 KiB` and what is held at once at most
//! `16 len + 2 len + 2 len + 8 KiB` (the vector, its strings, the line and a quoted value), rounded
//! up to `24 len + 8 KiB`.

mod fuzz_common;

use ascend_cold::decode::requests::{read_request_lines, RequestLine, StrategyName};
use ascend_cold::decode::{RequestDefaults, SamplingParams, Strategy as DecodeStrategy};
use ascend_cold::model::{LlamaConfig, RopeScaling};
use fuzz_common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

const NAME: &str = "fuzzed-requests.jsonl";

const BOUND: Bound = Bound {
    largest_factor: 16,
    largest_const: 4096,
    peak_factor: 24,
    peak_const: 8192,
};

/// A valid line: any subset of the optional members with values in their domains, and exactly one
/// prompt.
fn valid_line() -> impl Strategy<Value = Value> {
    let text = "[ -~]{0,40}";
    (
        prop_oneof![
            text.prop_map(|t| json!({ "prompt": t })),
            proptest::collection::vec(0u32..50_000, 1..20)
                .prop_map(|ids| json!({ "prompt_ids": ids })),
        ],
        proptest::option::of("[a-z]{1,8}"),
        proptest::option::of(prop_oneof![Just("greedy"), Just("cold")]),
        proptest::option::of((0.01f32..=1.0, 0.0f32..4.0)),
        proptest::option::of((0.0f32..2.0, 0usize..50, 0.05f32..=1.0, any::<u64>())),
        proptest::option::of(1usize..512),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::collection::vec(text, 0..3)),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(prompt, adapter, strategy, cold, sampling, max_new, ignore_eos, stop, chat)| {
                let mut line = prompt;
                let o = line.as_object_mut().unwrap();
                let mut put = |k: &str, v: Value| drop(o.insert(k.into(), v));
                if let Some(a) = adapter {
                    put("adapter", json!(a));
                }
                if let Some(s) = strategy {
                    put("strategy", json!(s));
                }
                if let Some((alpha, beta)) = cold {
                    put("alpha", json!(alpha));
                    put("beta", json!(beta));
                }
                if let Some((temperature, top_k, top_p, seed)) = sampling {
                    put("temperature", json!(temperature));
                    put("top_k", json!(top_k));
                    put("top_p", json!(top_p));
                    put("seed", json!(seed));
                }
                if let Some(n) = max_new {
                    put("max_new_tokens", json!(n));
                }
                if let Some(b) = ignore_eos {
                    put("ignore_eos", json!(b));
                }
                if let Some(s) = stop {
                    put("stop", json!(s));
                }
                if let Some(c) = chat {
                    put("chat", json!(c));
                }
                line
            },
        )
}

/// What `line` says, read independently of the parser (from the JSON value).
fn expected(line: &Value) -> RequestLine {
    let f32_of = |k: &str| line.get(k).map(|v| v.as_f64().unwrap() as f32);
    RequestLine {
        prompt: line.get("prompt").map(|v| v.as_str().unwrap().to_string()),
        prompt_ids: line.get("prompt_ids").map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        }),
        adapter: line.get("adapter").map(|v| v.as_str().unwrap().to_string()),
        strategy: line.get("strategy").map(|v| match v.as_str().unwrap() {
            "greedy" => StrategyName::Greedy,
            _ => StrategyName::Cold,
        }),
        alpha: f32_of("alpha"),
        beta: f32_of("beta"),
        temperature: f32_of("temperature"),
        top_k: line.get("top_k").map(|v| v.as_u64().unwrap() as usize),
        top_p: f32_of("top_p"),
        seed: line.get("seed").map(|v| v.as_u64().unwrap()),
        max_new_tokens: line
            .get("max_new_tokens")
            .map(|v| v.as_u64().unwrap() as usize),
        ignore_eos: line.get("ignore_eos").map(|v| v.as_bool().unwrap()),
        stop: line.get("stop").map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        }),
        chat: line.get("chat").map(|v| v.as_bool().unwrap()),
    }
}

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 50_000,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        bos_token_id: Some(0),
        eos_token_ids: vec![1],
    }
}

fn defaults() -> RequestDefaults {
    RequestDefaults {
        adapter: None,
        strategy: StrategyName::Greedy,
        alpha: 0.1,
        beta: 0.5,
        sampling: SamplingParams::default(),
        max_new_tokens: 16,
        ignore_eos: false,
        stop: vec!["END".into()],
        chat: false,
    }
}

/// Reads `bytes` as a requests file under the tracker; checks that an error names the file, a line
/// and a field, and that each accepted line resolves without panicking to the request it states.
fn check_read(bytes: &[u8]) -> Result<Outcome, TestCaseError> {
    let (r, usage) = measure(|| read_request_lines(bytes, Path::new(NAME)));
    let r = no_panic("read_request_lines", r)?;
    BOUND.check("read_request_lines", bytes.len(), usage)?;
    let rejected = match r {
        Ok(lines) => {
            let mut last = 0;
            for (number, line) in lines {
                prop_assert!(number > last, "line numbers increase");
                last = number;
                check_resolves(line)?;
            }
            None
        }
        Err(e) => {
            let class = named_error(&e, NAME)?;
            prop_assert!(class.starts_with("line #"), "{e} does not name the line");
            Some(class)
        }
    };
    Ok(Outcome {
        rejected,
        input: bytes.len(),
        usage,
    })
}

/// An accepted line resolves (or is refused with an error) without panicking, and what it resolves
/// to takes each field from the line when given, else from the defaults.
fn check_resolves(line: RequestLine) -> Result<(), TestCaseError> {
    let d = defaults();
    let encoded = |text: &str, _chat: bool| Ok(text.bytes().map(u32::from).collect());
    let adapter_index = |name: Option<&str>| Ok(name.map_or(-1, |n| n.len() as i64));
    let r = std::panic::catch_unwind(|| {
        line.clone()
            .into_request(&d, &config(), encoded, adapter_index)
    });
    let Ok(resolved) = no_panic("into_request", r)? else {
        return Ok(());
    };
    let want_prompt = match (&line.prompt, &line.prompt_ids) {
        (Some(t), None) => t.bytes().map(u32::from).collect(),
        (None, Some(ids)) => ids.clone(),
        _ => return Err(TestCaseError::fail("accepted without exactly one prompt")),
    };
    prop_assert_eq!(resolved.prompt, want_prompt);
    prop_assert_eq!(
        resolved.stop.max_new_tokens,
        line.max_new_tokens.unwrap_or(d.max_new_tokens)
    );
    prop_assert_eq!(
        resolved.stop.stop_strings,
        line.stop.clone().unwrap_or(d.stop.clone())
    );
    prop_assert_eq!(resolved.sampling.seed, line.seed.unwrap_or(d.sampling.seed));
    let cold = line.strategy.unwrap_or(d.strategy) == StrategyName::Cold;
    prop_assert_eq!(
        matches!(resolved.strategy, DecodeStrategy::Cold { .. }),
        cold
    );
    Ok(())
}

#[test]
fn random_bytes() {
    let _serial = serial();
    let any_bytes = proptest::collection::vec(any::<u8>(), 0..400);
    // Bytes from JSON's alphabet and the members' names, so the parser gets past the first byte.
    let tokens = proptest::collection::vec(
        prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("\n".to_string()),
            Just("\"prompt\"".to_string()),
            Just("\"prompt_ids\"".to_string()),
            Just("\"max_new_tokens\"".to_string()),
            Just("\"stop\"".to_string()),
            Just("\"strategy\"".to_string()),
            Just("\"cold\"".to_string()),
            Just("null".to_string()),
            Just("1e999".to_string()),
            Just("-1".to_string()),
            Just("18446744073709551616".to_string()),
            "[0-9]{1,4}",
            "\"[a-z]{0,6}\"",
        ],
        0..60,
    )
    .prop_map(|t| t.concat().into_bytes());
    let s = run(
        "requests random bytes",
        file!(),
        20_000,
        prop_oneof![any_bytes, tokens],
        |bytes| check_read(&bytes),
    );
    assert!(s.rejected > 0);
}

#[test]
fn mutated_valid_lines() {
    let _serial = serial();
    let strategy = (valid_line(), proptest::collection::vec(json_op(), 0..4));
    let s = run(
        "requests mutated lines",
        file!(),
        20_000,
        strategy,
        |(line, ops)| {
            if ops.is_empty() {
                let text = line.to_string();
                prop_assert_eq!(
                    RequestLine::parse(&text),
                    Ok(expected(&line)),
                    "a valid line"
                );
            }
            check_read(&mutate_json(&line, &ops))
        },
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "mutations all went one way"
    );
}

/// A file of valid lines with one mutated: an error names that line's number.
#[test]
fn a_mutated_line_among_valid_ones_is_the_line_named() {
    let _serial = serial();
    let strategy = (
        proptest::collection::vec(valid_line(), 1..8),
        any::<proptest::sample::Index>(),
        proptest::collection::vec(json_op(), 1..4),
    );
    let s = run(
        "requests mutated file",
        file!(),
        5_000,
        strategy,
        |(lines, which, ops)| {
            let k = which.index(lines.len());
            let bad = mutate_json(&lines[k], &ops);
            let mut file = vec![];
            for (i, line) in lines.iter().enumerate() {
                if i == k {
                    file.extend_from_slice(&bad);
                } else {
                    file.extend_from_slice(line.to_string().as_bytes());
                }
                file.push(b'\n');
            }
            let outcome = check_read(&file)?;
            if !bad.contains(&b'\n') {
                if let Err(e) = read_request_lines(file.as_slice(), Path::new(NAME)) {
                    let msg = e.to_string();
                    prop_assert!(msg.contains(&format!("line {}", k + 1)), "{msg}");
                }
            }
            Ok(outcome)
        },
    );
    assert!(s.accepted > 0 && s.rejected > 0);
}

#[test]
fn errors_name_the_line_and_the_member() {
    let _serial = serial();
    for (text, field) in [
        (r#"{"prompt_ids": [1, "x"]}"#, "line 1: prompt_ids[1]"),
        (r#"{"prompt": "a", "prompt_ids": [1]}"#, "line 1: prompt"),
        (r#"{"max_new_tokens": 5}"#, "line 1: prompt"),
        (r#"{"prompt_ids": []}"#, "line 1: prompt_ids"),
        (
            r#"{"prompt": "a", "max_new_tokens": -3}"#,
            "line 1: max_new_tokens",
        ),
        (
            r#"{"prompt": "a", "max_new_tokens": 1e30}"#,
            "line 1: max_new_tokens",
        ),
        (r#"{"prompt": "a", "strategy": "beam"}"#, "line 1: strategy"),
        (r#"{"prompt": "a", "temprature": 1}"#, "line 1"),
        (r#"{"prompt": "a"} {"prompt": "b"}"#, "line 1: line"),
        (r#"[1, 2]"#, "line 1: line"),
    ] {
        let file = format!("\n{text}\n");
        let err = read_request_lines(file.as_bytes(), Path::new(NAME))
            .unwrap_err()
            .to_string();
        let field = field.replace("line 1", "line 2");
        assert!(err.contains(&field) && err.contains(NAME), "{text}: {err}");
    }
    let err = read_request_lines(&b"{\"prompt\": \"\xff\"}"[..], Path::new(NAME))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1") && err.contains("UTF-8"), "{err}");
}

#[test]
fn a_line_longer_than_the_limit_is_refused_without_reading_it_whole() {
    // Its reader allocates up to the line limit: not while another test measures allocations.
    let _serial = serial();
    use ascend_cold::decode::requests::MAX_LINE_BYTES;
    // An endless line: the reader must stop at the limit, not read (or hold) it all.
    let endless = std::io::BufReader::new(std::io::repeat(b' '));
    let err = read_request_lines(endless, Path::new(NAME))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 1") && err.contains(&MAX_LINE_BYTES.to_string()),
        "{err}"
    );
}
