//! The host model against an independent implementation: Python transformers + peft (float32,
//! CPU) logits and greedy tokens recorded in `tests/fixtures/<fixture>/reference.json` by
//! `scripts/make-fixtures.py` (format in `tests/fixtures/README.md`).
//!
//! Tolerances, derived:
//!
//! * f32 weights, f32 LoRA (`HostLora`). Both implementations compute in f32 and differ only in
//!   summation order. Each dot product of length n (n <= 128 here) has a rounding error bounded by
//!   about `sqrt(n) * 2^-24 * sum|w_i x_i|` for random-order accumulation; with the fixtures' unit-scale
//!   activations that is ~1e-6 relative per projection. Two layers of seven projections, RMSNorm and
//!   softmax add a few such terms in quadrature and the logits are at most `max_abs_logit` (~12), so
//!   the expected gap is ~1e-5 absolute, which is what the fixture measures as
//!   `f32_vs_f64_logits_max_abs_diff` (f32 vs f64 of the *same* implementation). We allow
//!   `1e-4 * max(1, max_abs_logit)`: 10x the predicted gap, and far below what any real bug moves
//!   (a wrong RoPE pairing, scaling or GQA mapping moves logits by O(1); the adapters move them by
//!   `logits_last_max_abs_diff_vs_base`, also O(1)). Greedy tokens must then match exactly, because
//!   the smallest top-1/top-2 margin (`greedy_min_margin`, >= 0.1) is far above the tolerance.
//! * bf16 resident weights. Rounding a weight to bf16 (8 significant bits) is a relative error
//!   uniform in `[-2^-9, 2^-9]`, rms `2^-9 / sqrt(3) = 1.1e-3`. A projection output then errs by
//!   ~1.1e-3 of its rms size (errors of independent weights add in quadrature like the terms). A logit
//!   goes through `2 layers x 4 weight reads + LM head` such roundings, mostly added in quadrature
//!   (`sqrt(9) = 3`), and through residual adds that at most keep the relative size: ~3.3e-3 of the
//!   logit scale. We allow 4x that, `1.4e-2 * max(1, max_abs_logit)`, and report the measured gap.
//!   Greedy ids may legitimately differ where a step's margin is below twice that tolerance; they are
//!   compared only up to the first such step.
//!
//! Invariants that hold exactly (bit for bit), by construction of the forward: every (weight row,
//! token) dot product, attention row and LoRA delta is computed by the same code on the same values
//! whatever else is in the batch, and a prefill computes each position exactly as a decode step at
//! that position would. So batched == alone and prefill-then-decode == one prefill are asserted with
//! `==`.

mod model_common;

use ascend_cold::model::hf::load_hf;
use ascend_cold::model::{
    Adapter, HostLora, KvCache, LlamaModel, LoraDelta, Row, StackedAdapters, WeightDtype,
};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ASCEND_COLD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join("fixtures")
        });
    if dir.join("tiny-gqa-tied").is_dir() {
        Some(dir)
    } else {
        // Only before the fixtures branch is merged; once merged the folder is part of the tree.
        eprintln!(
            "SKIPPED: no fixtures at {} (merge wip/fixtures)",
            dir.display()
        );
        None
    }
}

struct Fixture {
    name: String,
    reference: Value,
    model_f32: LlamaModel,
    model_bf16: LlamaModel,
    stacked: StackedAdapters,
    prompt: Vec<u32>,
}

fn load(name: &str) -> Option<Fixture> {
    let dir = fixtures_dir()?.join(name);
    let reference: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let files = load_hf(&dir.join("model")).unwrap();
    assert_eq!(
        files.config.vocab_size,
        reference["vocab_size"].as_u64().unwrap() as usize
    );
    let prompt: Vec<u32> = reference["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    // The tokenizer is part of the check: same ids as the Python tokenizer.
    let tok = &files.tokenizer.as_ref().expect("tokenizer.json").tokenizer;
    let enc = tok
        .encode(reference["prompt"].as_str().unwrap(), true)
        .unwrap();
    assert_eq!(
        enc.get_ids(),
        &prompt[..],
        "{name}: token ids differ from the Python tokenizer"
    );
    let adapters: Vec<(String, Adapter)> = reference["adapters"]
        .as_object()
        .unwrap()
        .keys()
        .map(|a| {
            (
                a.clone(),
                Adapter::load(&dir.join("adapters").join(a), &files.config).unwrap(),
            )
        })
        .collect();
    for (a, ad) in &adapters {
        let want = reference["adapters"][a]["scaling"].as_f64().unwrap();
        assert!(
            (ad.config.scaling() as f64 - want).abs() <= 1e-6 * want,
            "{name}/{a}: scaling"
        );
    }
    let stacked = StackedAdapters::new(&adapters, &files.config).unwrap();
    Some(Fixture {
        name: name.into(),
        model_f32: LlamaModel::new(&files, WeightDtype::F32).unwrap(),
        model_bf16: LlamaModel::new(&files, WeightDtype::Bf16).unwrap(),
        reference,
        stacked,
        prompt,
    })
}

const FIXTURES: [&str; 2] = ["tiny-gqa-tied", "tiny-mha-untied"];

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

impl Fixture {
    fn adapter_index(&self, case: &Value) -> i64 {
        case["adapter"]
            .as_str()
            .map_or(-1, |a| self.stacked.index_of(a).unwrap() as i64)
    }

    fn scale(&self) -> f32 {
        (self.reference["max_abs_logit"].as_f64().unwrap() as f32).max(1.0)
    }

    /// Prefill the prompt, then `steps` greedy tokens; returns (logits after the prompt, tokens).
    fn greedy(
        &self,
        model: &LlamaModel,
        adapter: i64,
        steps: usize,
    ) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        self.greedy_with(model, &HostLora::new(&self.stacked), adapter, steps)
    }

    fn greedy_with(
        &self,
        model: &LlamaModel,
        lora: &dyn LoraDelta,
        adapter: i64,
        steps: usize,
    ) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let mut cache = model.new_cache();
        let mut rows = [Row {
            tokens: &self.prompt,
            cache: &mut cache,
            adapter,
        }];
        let first = model
            .forward(&mut rows, Some(lora))
            .unwrap()
            .row(0)
            .to_vec();
        let mut logits = first.clone();
        let mut out = vec![];
        let mut margins = vec![];
        for _ in 0..steps {
            let t = argmax(&logits);
            let mut sorted = logits.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            margins.push(sorted[0] - sorted[1]);
            out.push(t);
            let mut rows = [Row {
                tokens: &[t],
                cache: &mut cache,
                adapter,
            }];
            logits = model
                .forward(&mut rows, Some(lora))
                .unwrap()
                .row(0)
                .to_vec();
        }
        (first, out, margins)
    }
}

#[test]
fn f32_logits_and_greedy_tokens_match_transformers_and_peft() {
    for name in FIXTURES {
        let Some(fx) = load(name) else { return };
        let tol = 1e-4 * fx.scale();
        let n_greedy = fx.reference["n_greedy"].as_u64().unwrap() as usize;
        for case in fx.reference["cases"].as_array().unwrap() {
            let adapter = fx.adapter_index(case);
            let (logits, tokens, _) = fx.greedy(&fx.model_f32, adapter, n_greedy);
            let d = max_diff(&logits, &floats(&case["logits_last"]));
            eprintln!(
                "{name} {:?}: f32 max |diff| {d:.3e} (tol {tol:.1e})",
                case["adapter"]
            );
            assert!(d <= tol, "{name} {:?}: diff {d} > {tol}", case["adapter"]);
            let want: Vec<u32> = case["greedy_new_tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(tokens, want, "{name} {:?}: greedy tokens", case["adapter"]);
        }
    }
}

#[test]
fn base_logits_at_every_prompt_position_match_with_token_by_token_decoding() {
    for name in FIXTURES {
        let Some(fx) = load(name) else { return };
        let tol = 1e-4 * fx.scale();
        let base = &fx.reference["cases"][0];
        assert!(base["adapter"].is_null());
        let all = base["logits_all"].as_array().unwrap();
        let mut cache = fx.model_f32.new_cache();
        for (p, want) in all.iter().enumerate() {
            let mut rows = [Row {
                tokens: &fx.prompt[p..p + 1],
                cache: &mut cache,
                adapter: -1,
            }];
            let got = fx.model_f32.forward(&mut rows, None).unwrap();
            let d = max_diff(got.row(0), &floats(want));
            assert!(d <= tol, "{name} position {p}: diff {d}");
        }
    }
}

#[test]
fn bf16_weights_match_within_the_derived_tolerance() {
    for name in FIXTURES {
        let Some(fx) = load(name) else { return };
        let tol = 4.0 * 3.0 * 2f32.powi(-9) / 3f32.sqrt() * fx.scale();
        let n_greedy = fx.reference["n_greedy"].as_u64().unwrap() as usize;
        for case in fx.reference["cases"].as_array().unwrap() {
            let adapter = fx.adapter_index(case);
            let (logits, tokens, margins) = fx.greedy(&fx.model_bf16, adapter, n_greedy);
            let d = max_diff(&logits, &floats(&case["logits_last"]));
            eprintln!(
                "{name} {:?}: bf16 max |diff| {d:.3e} (tol {tol:.2e})",
                case["adapter"]
            );
            assert!(
                d <= tol,
                "{name} {:?}: bf16 diff {d} > {tol}",
                case["adapter"]
            );
            let want: Vec<u32> = case["greedy_new_tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let ref_margins = floats(&case["greedy_step_margin"]);
            for i in 0..n_greedy {
                if ref_margins[i].min(margins[i]) < 2.0 * tol {
                    break; // a near tie: the rest may legitimately diverge
                }
                assert_eq!(
                    tokens[i], want[i],
                    "{name} {:?}: bf16 greedy step {i}",
                    case["adapter"]
                );
            }
        }
    }
}

#[test]
fn batched_rows_with_different_adapters_and_lengths_equal_each_row_alone() {
    for name in FIXTURES {
        let Some(fx) = load(name) else { return };
        let lora = HostLora::new(&fx.stacked);
        for model in [&fx.model_f32, &fx.model_bf16] {
            let p = &fx.prompt;
            // Expert/amateur pairs as CoLD batches them, plus other lengths.
            let batch: Vec<(&[u32], i64)> = vec![
                (p, 0),
                (p, -1),
                (&p[..5], 1),
                (&p[..12], 0),
                (&p[..1], -1),
                (&p[3..], 1),
            ];
            let alone: Vec<Vec<f32>> = batch
                .iter()
                .map(|&(t, a)| {
                    let mut cache = model.new_cache();
                    let mut rows = [Row {
                        tokens: t,
                        cache: &mut cache,
                        adapter: a,
                    }];
                    model
                        .forward(&mut rows, Some(&lora as &dyn LoraDelta))
                        .unwrap()
                        .row(0)
                        .to_vec()
                })
                .collect();
            let mut caches: Vec<KvCache> = batch.iter().map(|_| model.new_cache()).collect();
            let mut rows: Vec<Row> = caches
                .iter_mut()
                .zip(&batch)
                .map(|(cache, &(tokens, adapter))| Row {
                    tokens,
                    cache,
                    adapter,
                })
                .collect();
            let logits = model.forward(&mut rows, Some(&lora)).unwrap();
            for (i, want) in alone.iter().enumerate() {
                assert!(
                    logits.row(i) == &want[..],
                    "{}: row {i} differs in a batch",
                    fx.name
                );
            }
        }
    }
}

#[test]
fn prefill_then_decode_equals_one_long_prefill() {
    for name in FIXTURES {
        let Some(fx) = load(name) else { return };
        let lora = HostLora::new(&fx.stacked);
        for adapter in [-1i64, 0, 1] {
            let model = &fx.model_f32;
            let mut whole = model.new_cache();
            let mut rows = [Row {
                tokens: &fx.prompt,
                cache: &mut whole,
                adapter,
            }];
            let want = model.forward(&mut rows, Some(&lora)).unwrap();
            let mut cache = model.new_cache();
            let split = fx.prompt.len() / 2;
            let mut rows = [Row {
                tokens: &fx.prompt[..split],
                cache: &mut cache,
                adapter,
            }];
            model.forward(&mut rows, Some(&lora)).unwrap();
            let mut got = None;
            for t in split..fx.prompt.len() {
                let mut rows = [Row {
                    tokens: &fx.prompt[t..t + 1],
                    cache: &mut cache,
                    adapter,
                }];
                got = Some(model.forward(&mut rows, Some(&lora)).unwrap());
            }
            assert!(got.unwrap() == want, "{name} adapter {adapter}");
        }
    }
}

/// The LoRA deltas through the BGMV kernels on the emulator (`DeviceLora`, x, A and B rounded to
/// f16 / bf16, f32 accumulation) against the same reference. The fixture script runs that arithmetic in
/// PyTorch (`lora_<dtype>_emulated`): the logits gap it measured is the rounding's own effect, so we
/// allow 4x it (plus the f32 tolerance), and the greedy ids must equal the emulated run's.
#[test]
fn lora_through_bgmv_on_the_emulator_matches_the_rounded_reference() {
    use ascend_cold::model::DeviceLora;
    use ascend_cold::{Device, Stream};
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    for name in FIXTURES {
        let Some(fx) = load(name) else { return };
        let f16_lora = DeviceLora::<half::f16>::new(&fx.stacked, &stream).unwrap();
        let bf16_lora = DeviceLora::<half::bf16>::new(&fx.stacked, &stream).unwrap();
        let n_greedy = fx.reference["n_greedy"].as_u64().unwrap() as usize;
        for case in fx.reference["cases"].as_array().unwrap() {
            if case["adapter"].is_null() {
                continue;
            }
            let adapter = fx.adapter_index(case);
            for (dt, lora) in [("f16", &f16_lora as &dyn LoraDelta), ("bf16", &bf16_lora)] {
                let emulated = &case[format!("lora_{dt}_emulated").as_str()];
                let gap = emulated["logits_all_positions_max_abs_diff"]
                    .as_f64()
                    .unwrap() as f32;
                let tol = 1e-4 * fx.scale() + 4.0 * gap;
                let (logits, tokens, _) = fx.greedy_with(&fx.model_f32, lora, adapter, n_greedy);
                let d = max_diff(&logits, &floats(&case["logits_last"]));
                eprintln!(
                    "{name} {:?} {dt}: max |diff| {d:.3e} (tol {tol:.1e})",
                    case["adapter"]
                );
                assert!(
                    d <= tol,
                    "{name} {:?} {dt}: diff {d} > {tol}",
                    case["adapter"]
                );
                let want: Vec<u32> = emulated["greedy_new_tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(
                    tokens, want,
                    "{name} {:?} {dt}: greedy tokens",
                    case["adapter"]
                );
            }
        }
    }
}
