//! The decoder as a library user meets it: stop rules built from the model's own EOS ids, prompts
//! encoded through the library, text deltas per step, `max_new_tokens` 0 generating nothing, and
//! CoLD without an adapter refused with the reason, in the library and the CLI.
//!
//! References are independent of the code under test: the fixtures' own files (config.json,
//! generation_config.json, GGUF metadata read key by key), transformers' token ids in reference.json,
//! and the tokenizer decoding a whole output at once.

mod gguf_util;

use ascend_cold::decode::{
    encode_prompt, Decoder, FinishReason, Request, RequestId, SamplingParams, StopRules, Strategy,
};
use ascend_cold::model::gguf::{load_from, GgufFile};
use ascend_cold::model::hf::load_hf;
use ascend_cold::model::weights::TokenizerFiles;
use ascend_cold::model::{
    Adapter, DeviceLora, LlamaModel, ModelFiles, StackedAdapters, WeightDtype,
};
use ascend_cold::{Device, Stream};
use half::bf16;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: [&str; 2] = ["tiny-gqa-tied", "tiny-mha-untied"];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

struct Fixture {
    files: ModelFiles,
    model: LlamaModel,
    stacked: StackedAdapters,
    reference: Value,
}

impl Fixture {
    fn load(name: &str) -> Self {
        let dir = fixture_dir(name);
        let reference = read_json(&dir.join("reference.json"));
        let files = load_hf(&dir.join("model")).unwrap();
        let adapters: Vec<(String, Adapter)> = reference["adapters"]
            .as_object()
            .unwrap()
            .keys()
            .map(|a| {
                let dir = dir.join("adapters").join(a);
                (a.clone(), Adapter::load(&dir, &files.config).unwrap())
            })
            .collect();
        Fixture {
            model: LlamaModel::new(&files, WeightDtype::F32).unwrap(),
            stacked: StackedAdapters::new(&adapters, &files.config).unwrap(),
            files,
            reference,
        }
    }

    fn prompt(&self) -> Vec<u32> {
        ids(&self.reference["prompt_ids"])
    }

    fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.files.tokenizer.as_ref().unwrap().tokenizer
    }
}

fn stream() -> Stream {
    Stream::new(&Device::emulator().unwrap()).unwrap()
}

fn request(prompt: &[u32], adapter: i64, strategy: Strategy, stop: StopRules) -> Request {
    Request {
        prompt: prompt.to_vec(),
        adapter,
        strategy,
        sampling: SamplingParams::default(),
        stop,
    }
}

/// Runs the decoder to the end; every request's deltas in step order.
fn run_collecting(d: &mut Decoder<'_>) -> HashMap<RequestId, Vec<String>> {
    let mut deltas: HashMap<RequestId, Vec<String>> = HashMap::new();
    while !d.is_idle() {
        for t in d.step().unwrap() {
            let list = deltas.entry(t.id).or_default();
            list.push(t.text_delta);
            // The output's text is at every step what the deltas released.
            assert_eq!(d.output(t.id).unwrap().text, list.concat());
        }
    }
    deltas
}

/// `eos_token_id` of a Hugging Face JSON file: an int, a list, or absent.
fn hf_eos(json: &Value) -> Vec<u32> {
    match &json["eos_token_id"] {
        Value::Null => vec![],
        Value::Array(_) => ids(&json["eos_token_id"]),
        v => vec![v.as_u64().unwrap() as u32],
    }
}

#[test]
fn for_model_takes_the_eos_ids_of_config_json_and_generation_config_json() {
    for name in FIXTURES {
        let dir = fixture_dir(name).join("model");
        let mut want = hf_eos(&read_json(&dir.join("config.json")));
        for id in hf_eos(&read_json(&dir.join("generation_config.json"))) {
            if !want.contains(&id) {
                want.push(id);
            }
        }
        assert!(!want.is_empty(), "{name}: the fixture names its EOS");
        let files = load_hf(&dir).unwrap();
        let rules = StopRules::for_model(&files.config, 7);
        assert_eq!(rules.eos_tokens, want, "{name}");
        assert_eq!((rules.max_new_tokens, rules.ignore_eos), (7, false));
        assert!(rules.stop_strings.is_empty());
    }

    // A list in config.json plus more in generation_config.json: all of them, each once.
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_dir("tiny-gqa-tied").join("model");
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    for (f, eos) in [
        ("config.json", serde_json::json!([1, 2])),
        ("generation_config.json", serde_json::json!([5, 1])),
    ] {
        let mut json = read_json(&src.join(f));
        json["eos_token_id"] = eos;
        std::fs::write(tmp.path().join(f), json.to_string()).unwrap();
    }
    let files = load_hf(tmp.path()).unwrap();
    assert_eq!(StopRules::for_model(&files.config, 1).eos_tokens, [1, 2, 5]);
}

#[test]
fn rules_for_the_model_end_each_request_at_its_first_eos() {
    let f = Fixture::load("tiny-gqa-tied");
    let eos = &f.files.config.eos_token_ids;
    let mut d = Decoder::new(&f.model, None, stream());
    // Near-uniform sampling over 384 ids, so the EOS turns up within the budget for some seeds.
    let ids: Vec<RequestId> = (0..12)
        .map(|seed| {
            d.submit(Request {
                sampling: SamplingParams {
                    temperature: 20.0,
                    top_k: 0,
                    top_p: 1.0,
                    seed,
                },
                ..request(
                    &f.prompt(),
                    -1,
                    Strategy::Greedy,
                    StopRules::for_model(&f.files.config, 200),
                )
            })
            .unwrap()
        })
        .collect();
    d.run().unwrap();
    let mut ended_by_eos = 0;
    for id in ids {
        let out = d.output(id).unwrap();
        let first_eos = out.tokens.iter().position(|t| eos.contains(t));
        match out.finish {
            Some(FinishReason::Eos) => {
                ended_by_eos += 1;
                assert_eq!(first_eos, Some(out.tokens.len() - 1), "{:?}", out.tokens);
            }
            other => {
                assert_eq!(other, Some(FinishReason::Length));
                assert_eq!((first_eos, out.tokens.len()), (None, 200));
            }
        }
    }
    assert!(
        ended_by_eos > 0,
        "no seed produced the EOS: the test shows nothing"
    );
}

#[test]
fn max_new_tokens_zero_generates_nothing_and_one_gives_exactly_one_token() {
    let f = Fixture::load("tiny-gqa-tied");
    let mut d = Decoder::new(&f.model, None, stream());
    let rules = |n| StopRules {
        ignore_eos: true,
        ..StopRules::for_model(&f.files.config, n)
    };
    let zero = d
        .submit(request(&f.prompt(), -1, Strategy::Greedy, rules(0)))
        .unwrap();
    assert!(d.is_idle(), "a request for no tokens does not run");
    let out = d.output(zero).unwrap();
    assert!(out.tokens.is_empty() && out.text.is_empty());
    assert_eq!(out.finish, Some(FinishReason::Length));
    assert!(d.step().unwrap().is_empty(), "no forward for it");
    // Still checked like any request: a bad adapter is refused even when nothing is asked.
    assert!(d
        .submit(request(&f.prompt(), 3, Strategy::Greedy, rules(0)))
        .is_err());
    let id = d
        .submit(request(&f.prompt(), -1, Strategy::Greedy, rules(1)))
        .unwrap();
    d.run().unwrap();
    let out = d.output(id).unwrap();
    assert_eq!(out.tokens.len(), 1);
    assert_eq!(out.finish, Some(FinishReason::Length));
}

#[test]
fn cold_without_an_adapter_is_refused_saying_why() {
    let f = Fixture::load("tiny-gqa-tied");
    let s = stream();
    let lora = DeviceLora::<bf16>::new(&f.stacked, &s).unwrap();
    let rules = StopRules::for_model(&f.files.config, 4);
    // With adapters loaded and with none: both say CoLD needs one, not just that -1 is an index.
    for mut d in [
        Decoder::new(&f.model, Some(&lora), s.clone()),
        Decoder::new(&f.model, None, s.clone()),
    ] {
        let err = d
            .submit(request(
                &f.prompt(),
                -1,
                Strategy::COLD_DEFAULT,
                rules.clone(),
            ))
            .unwrap_err()
            .to_string();
        for word in ["CoLD", "expert adapter", "amateur", "base model", "got -1"] {
            assert!(err.contains(word), "{word:?} not in {err}");
        }
        assert!(d.is_idle());
    }
    // The same request with an adapter runs.
    let mut d = Decoder::new(&f.model, Some(&lora), s);
    let id = d
        .submit(request(&f.prompt(), 0, Strategy::COLD_DEFAULT, rules))
        .unwrap();
    d.run().unwrap();
    assert!(!d.output(id).unwrap().tokens.is_empty());
}

#[test]
fn encode_prompt_gives_transformers_ids_plain_and_the_template_rendered_by_hand_for_chat() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        let tok = f.files.tokenizer.as_ref().unwrap();
        let text = f.reference["prompt"].as_str().unwrap();
        // reference.json: transformers' tokenizer with its special tokens (the BOS).
        assert_eq!(
            encode_prompt(tok, &f.files.config, text, false).unwrap(),
            f.prompt(),
            "{name}"
        );
        let err = encode_prompt(tok, &f.files.config, text, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chat template") && err.contains("none"),
            "{err}"
        );

        let with_template = TokenizerFiles {
            tokenizer: tok.tokenizer.clone(),
            chat_template: Some(
                "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}\
                 {% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
                    .into(),
            ),
        };
        let by_hand = format!("<s>[user] {text}</s>[assistant]");
        let want = tok.tokenizer.encode(by_hand, false).unwrap();
        let got = encode_prompt(&with_template, &f.files.config, text, true).unwrap();
        assert_eq!(got, want.get_ids(), "{name}");
        // The template's BOS and EOS became the special tokens, not their spelling in characters.
        assert_eq!(got[0], 0);
        assert_eq!(got.iter().filter(|&&t| t == 1).count(), 1);
    }
}

/// The deltas of `id`, checked: concatenated they are the output's text.
fn joined(d: &Decoder<'_>, deltas: &HashMap<RequestId, Vec<String>>, id: RequestId) -> String {
    let text = deltas[&id].concat();
    assert_eq!(d.output(id).unwrap().text, text);
    text
}

#[test]
fn text_deltas_concatenate_to_what_the_tokenizer_decodes_from_the_whole_output() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        let s = stream();
        let lora = DeviceLora::<bf16>::new(&f.stacked, &s).unwrap();
        let mut d = Decoder::new(&f.model, Some(&lora), s).with_tokenizer(f.tokenizer());
        let rules = StopRules {
            ignore_eos: true,
            ..StopRules::for_model(&f.files.config, 40)
        };
        let mut ids = vec![];
        for (adapter, strategy) in [
            (-1, Strategy::Greedy),
            (1, Strategy::Greedy),
            (0, Strategy::COLD_DEFAULT),
        ] {
            ids.push(
                d.submit(request(&f.prompt(), adapter, strategy, rules.clone()))
                    .unwrap(),
            );
        }
        // Sampled: arbitrary byte tokens, so characters split across tokens and invalid UTF-8.
        for seed in 0..4 {
            ids.push(
                d.submit(Request {
                    sampling: SamplingParams {
                        temperature: 3.0,
                        top_k: 0,
                        top_p: 1.0,
                        seed,
                    },
                    ..request(&f.prompt(), 1, Strategy::Greedy, rules.clone())
                })
                .unwrap(),
            );
        }
        let deltas = run_collecting(&mut d);
        let mut streamed = 0;
        for id in ids {
            let out = d.output(id).unwrap();
            assert_eq!(out.tokens.len(), 40);
            assert_eq!(deltas[&id].len(), 40, "one delta per token");
            let whole = f.tokenizer().decode(&out.tokens, true).unwrap();
            assert_eq!(joined(&d, &deltas, id), whole, "{name} {id:?}");
            streamed += deltas[&id][..39].iter().filter(|t| !t.is_empty()).count();
        }
        assert!(
            streamed > 40,
            "{name}: the text came out as it went, not at the end"
        );
    }
}

#[test]
fn a_stop_string_cuts_the_text_before_it_and_no_delta_holds_any_of_it() {
    let f = Fixture::load("tiny-gqa-tied");
    let s = stream();
    let lora = DeviceLora::<bf16>::new(&f.stacked, &s).unwrap();
    let tok = f.tokenizer();
    let rules = |stop: &[&str]| StopRules {
        ignore_eos: true,
        stop_strings: stop.iter().map(|s| s.to_string()).collect(),
        ..StopRules::for_model(&f.files.config, 24)
    };
    // The adapter b-all's greedy output (random weights: invalid UTF-8 all over), then a stop string
    // of plain characters across two of its tokens' texts, first whole where a token ends on a whole
    // character, so the request stops at that token.
    let mut d = Decoder::new(&f.model, Some(&lora), s.clone()).with_tokenizer(tok);
    let id = d
        .submit(request(&f.prompt(), 1, Strategy::Greedy, rules(&[])))
        .unwrap();
    d.run().unwrap();
    let tokens = d.output(id).unwrap().tokens.clone();
    let whole = tok.decode(&tokens, true).unwrap();
    let text_of = |n: usize| tok.decode(&tokens[..n], true).unwrap();
    let (stop, stop_tokens) = (1..tokens.len())
        .find_map(|k| {
            let boundary = text_of(k).len();
            let stop = whole.get(boundary.checked_sub(2)?..boundary + 2)?;
            let n = (1..=tokens.len()).find(|&n| text_of(n).contains(stop))?;
            let plain = stop.chars().all(|c| c.is_ascii_graphic() || c == ' ');
            (plain && !text_of(n).ends_with(char::REPLACEMENT_CHARACTER)).then_some((stop, n))
        })
        .expect("a stop string of plain characters across two tokens");
    let cut = whole.find(stop).unwrap();
    assert!(cut > 0);

    let never = "a stop string far longer than the whole output, so it holds every delta back";
    for stops in [vec![stop], vec![stop, never]] {
        let mut d = Decoder::new(&f.model, Some(&lora), s.clone()).with_tokenizer(tok);
        let id = d
            .submit(request(&f.prompt(), 1, Strategy::Greedy, rules(&stops)))
            .unwrap();
        let deltas = run_collecting(&mut d);
        let out = d.output(id).unwrap();
        assert_eq!(out.finish, Some(FinishReason::Stop), "{stops:?}");
        assert_eq!(out.tokens, tokens[..stop_tokens], "{stop:?}");
        assert_eq!(joined(&d, &deltas, id), whole[..cut], "{stops:?}");
        let released_early = deltas[&id][..deltas[&id].len() - 1].concat();
        if stops.len() == 1 {
            assert!(
                !released_early.is_empty(),
                "text before the stop string streams"
            );
        } else {
            assert!(
                released_early.is_empty(),
                "held back while it could begin {never:?}"
            );
        }
    }

    // Held back for a stop string that never comes: released whole when the budget ends.
    let mut d = Decoder::new(&f.model, Some(&lora), s).with_tokenizer(tok);
    let id = d
        .submit(request(&f.prompt(), 1, Strategy::Greedy, rules(&[never])))
        .unwrap();
    let deltas = run_collecting(&mut d);
    assert_eq!(d.output(id).unwrap().finish, Some(FinishReason::Length));
    assert_eq!(joined(&d, &deltas, id), whole);
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ascend-cold"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cli_refuses_cold_without_an_adapter_with_the_reason() {
    let model = fixture_dir("tiny-gqa-tied").join("model");
    let model = model.to_str().unwrap();
    for (extra, words) in [
        (
            &["--prompt-ids", "0,54,261", "--strategy", "cold"][..],
            &["CoLD", "expert adapter"][..],
        ),
        (&["--prompt", "x", "--chat"][..], &["chat template"][..]),
    ] {
        let mut args = vec!["decode", "--model", model, "--device", "emu"];
        args.extend(extra);
        let out = cli(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(text(&out.stdout).is_empty(), "{args:?}: nothing generated");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
    }
}

#[test]
fn cli_max_new_tokens_zero_writes_an_empty_result() {
    let model = fixture_dir("tiny-gqa-tied").join("model");
    let args = [
        "decode",
        "--model",
        model.to_str().unwrap(),
        "--device",
        "emu",
        "--prompt-ids",
        "0,54,261",
        "--max-new-tokens",
        "0",
        "--json",
    ];
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "one result line");
    assert_eq!(lines[0]["tokens"], serde_json::json!([]));
    assert_eq!(lines[0]["finish"], "length");
}

#[test]
fn cli_streams_exactly_the_text_of_its_json_output() {
    let dir = fixture_dir("tiny-gqa-tied");
    let model = dir.join("model");
    let adapter = format!("b={}", dir.join("adapters/b-all").display());
    for stop in [None, Some(" the")] {
        let mut args = vec![
            "decode",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            &adapter,
            "--adapter-name",
            "b",
            "--prompt",
            "The expert is",
            "--max-new-tokens",
            "20",
            "--device",
            "emu",
        ];
        if let Some(s) = stop {
            args.extend(["--stop", s]);
        }
        let streamed = cli(&args);
        assert!(streamed.status.success(), "{}", text(&streamed.stderr));
        args.push("--json");
        let json = cli(&args);
        assert!(json.status.success(), "{}", text(&json.stderr));
        let json: Value = serde_json::from_slice(&json.stdout).unwrap();
        let want = json["text"].as_str().unwrap();
        assert!(!want.is_empty());
        assert_eq!(text(&streamed.stdout), format!("{want}\n"), "stop {stop:?}");
    }
}

/// The real model (SmolLM2-135M-Instruct, GGUF), against transformers: a chat prompt encoded by the
/// library, decoded with rules from the model, stops at the model's EOS with transformers' text; a
/// plain prompt's deltas rebuild a text ending in a two-byte character.
#[test]
fn smollm2_chat_and_plain_prompts_decode_to_transformers_text() {
    let Some(path) = gguf_util::smollm2_path() else {
        eprintln!("skipped: SmolLM2-135M-Instruct GGUF not found (scripts/fetch-smollm2)");
        return;
    };
    let reference = read_json(&fixture_dir("smollm2").join("reference.json"));
    let file = GgufFile::open(&path).unwrap();
    let mut want_eos = vec![];
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = file.get(key).and_then(|v| v.as_u64()) {
            if !want_eos.contains(&(id as u32)) {
                want_eos.push(id as u32);
            }
        }
    }
    assert!(!want_eos.is_empty());
    let files = load_from(&file).unwrap();
    let tok = files.tokenizer.as_ref().unwrap();
    assert_eq!(StopRules::for_model(&files.config, 8).eos_tokens, want_eos);

    let prompts = reference["prompts"].as_array().unwrap();
    let case = |name: &str| prompts.iter().find(|p| p["name"] == name).unwrap();
    let (chat, plain) = (case("chat"), case("plain"));
    let question = reference["tokenizer"]["chat_messages"][0]["content"]
        .as_str()
        .unwrap();
    let chat_ids = encode_prompt(tok, &files.config, question, true).unwrap();
    assert_eq!(chat_ids, ids(&chat["prompt_ids"]));
    let plain_text = plain["text"].as_str().unwrap();
    let plain_ids = encode_prompt(tok, &files.config, plain_text, false).unwrap();
    assert_eq!(plain_ids, ids(&plain["prompt_ids"]));

    let model = LlamaModel::new(&files, WeightDtype::F32).unwrap();
    let mut d = Decoder::new(&model, None, stream()).with_tokenizer(&tok.tokenizer);
    let rules = StopRules::for_model(&files.config, 8);
    let c = d
        .submit(request(&chat_ids, -1, Strategy::Greedy, rules.clone()))
        .unwrap();
    let p = d
        .submit(request(&plain_ids, -1, Strategy::Greedy, rules))
        .unwrap();
    let deltas = run_collecting(&mut d);

    // transformers decoded with the special tokens; the decoder's text skips them.
    let out = d.output(c).unwrap();
    assert_eq!(out.tokens, ids(&chat["greedy_new_tokens"]));
    assert_eq!(out.finish, Some(FinishReason::Eos));
    let want = chat["greedy_text"].as_str().unwrap();
    assert_eq!(
        joined(&d, &deltas, c),
        want.strip_suffix("<|im_end|>").unwrap()
    );

    let out = d.output(p).unwrap();
    assert_eq!(out.tokens, ids(&plain["greedy_new_tokens"]));
    assert_eq!(out.finish, Some(FinishReason::Length));
    let want = plain["greedy_text"].as_str().unwrap();
    assert!(!want.is_ascii());
    assert_eq!(joined(&d, &deltas, p), want);
}
