//! The decoding loop on the fixture models (tests/fixtures, made by transformers + peft), with every
//! LoRA delta through the BGMV kernels and CoLD scoring through `ops::cold_score` on the emulator.
//!
//! Equalities here are exact (token ids), because each is a comparison of the same arithmetic: the
//! model computes a row identically whatever else is in the batch (asserted bit for bit in
//! model_fixtures.rs), and the naive CoLD below uses the same cold_score kernel on the same logits.

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::ColdShape;
use ascend_cold::decode::{
    AdmissionLimits, Decoder, FinishReason, Request, RequestId, SamplingParams, StopRules, Strategy,
};
use ascend_cold::model::hf::load_hf;
use ascend_cold::model::{
    Adapter, DeviceLora, KvCache, LlamaModel, LoraDelta, Row, StackedAdapters, WeightDtype,
};
use ascend_cold::{ops, Device, DeviceBuffer, Stream};
use half::bf16;
use std::path::PathBuf;

struct Setup {
    model: LlamaModel,
    stacked: StackedAdapters,
    prompt: Vec<u32>,
    reference: serde_json::Value,
}

fn fixture(name: &str) -> Setup {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let files = load_hf(&dir.join("model")).unwrap();
    let mut adapters: Vec<(String, Adapter)> = reference["adapters"]
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
    // A third, different adapter: the second with its B matrices negated and halved.
    let mut third = adapters[1].1.clone();
    for pair in third.modules.values_mut() {
        pair.b.data.iter_mut().for_each(|v| *v *= -0.5);
    }
    adapters.push(("third".into(), third));
    let prompt = reference["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    Setup {
        model: LlamaModel::new(&files, WeightDtype::F32).unwrap(),
        stacked: StackedAdapters::new(&adapters, &files.config).unwrap(),
        prompt,
        reference,
    }
}

fn request(prompt: &[u32], adapter: i64, strategy: Strategy, max_new_tokens: usize) -> Request {
    Request {
        prompt: prompt.to_vec(),
        adapter,
        strategy,
        sampling: SamplingParams::default(),
        stop: StopRules {
            eos_tokens: vec![],
            ignore_eos: true,
            stop_strings: vec![],
            max_new_tokens,
        },
    }
}

fn decode_alone(s: &Setup, lora: &dyn LoraDelta, stream: &Stream, req: Request) -> Vec<u32> {
    let mut d = Decoder::new(&s.model, Some(lora), stream.clone());
    let id = d.submit(req).unwrap();
    d.run().unwrap();
    d.output(id).unwrap().tokens.clone()
}

/// CoLD done naively: the expert and the base model as two separate single-row forwards with their
/// own caches, then the same cold_score kernel on their logits.
fn naive_cold(
    s: &Setup,
    lora: &dyn LoraDelta,
    stream: &Stream,
    adapter: i64,
    alpha: f32,
    beta: f32,
    n: usize,
) -> Vec<u32> {
    let (mut ec, mut ac): (KvCache, KvCache) = (s.model.new_cache(), s.model.new_cache());
    let mut feed = s.prompt.clone();
    let mut out = vec![];
    let vocab = s.model.config().vocab_size;
    for _ in 0..n {
        let e = s
            .model
            .forward(
                &mut [Row {
                    tokens: &feed,
                    cache: &mut ec,
                    adapter,
                }],
                Some(lora),
            )
            .unwrap();
        let a = s
            .model
            .forward(
                &mut [Row {
                    tokens: &feed,
                    cache: &mut ac,
                    adapter: -1,
                }],
                Some(lora),
            )
            .unwrap();
        let device = stream.device();
        let (de, da) = (
            DeviceBuffer::from_host(device, &e.data).unwrap(),
            DeviceBuffer::from_host(device, &a.data).unwrap(),
        );
        let pick = ops::cold_score_host(
            stream,
            de.view(),
            da.view(),
            ColdShape { rows: 1, vocab },
            ColdParams::new(alpha, beta).unwrap(),
        )
        .unwrap()[0];
        out.push(pick.token as u32);
        feed = vec![pick.token as u32];
    }
    out
}

#[test]
fn cold_in_one_batched_forward_equals_cold_from_two_separate_forwards() {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    for name in ["tiny-gqa-tied", "tiny-mha-untied"] {
        let s = fixture(name);
        let lora = DeviceLora::<bf16>::new(&s.stacked, &stream).unwrap();
        for (adapter, alpha, beta) in [(0, 0.1, 0.5), (1, 0.5, 1.0), (2, 0.01, 0.25)] {
            let batched = decode_alone(
                &s,
                &lora,
                &stream,
                request(&s.prompt, adapter, Strategy::Cold { alpha, beta }, 12),
            );
            let naive = naive_cold(&s, &lora, &stream, adapter, alpha, beta, 12);
            assert_eq!(
                batched, naive,
                "{name}: adapter {adapter}, alpha {alpha}, beta {beta}"
            );
        }
    }
}

#[test]
fn cold_with_beta_zero_and_alpha_one_is_greedy_with_the_adapter() {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    for name in ["tiny-gqa-tied", "tiny-mha-untied"] {
        let s = fixture(name);
        let lora = DeviceLora::<bf16>::new(&s.stacked, &stream).unwrap();
        for adapter in 0..3 {
            let cold = decode_alone(
                &s,
                &lora,
                &stream,
                request(
                    &s.prompt,
                    adapter,
                    Strategy::Cold {
                        alpha: 1.0,
                        beta: 0.0,
                    },
                    16,
                ),
            );
            let greedy = decode_alone(
                &s,
                &lora,
                &stream,
                request(&s.prompt, adapter, Strategy::Greedy, 16),
            );
            assert_eq!(cold, greedy, "{name}: adapter {adapter}");
        }
    }
}

#[test]
fn a_mixed_batch_gives_each_request_its_tokens_alone_even_finishing_at_different_steps() {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let s = fixture("tiny-gqa-tied");
    let lora = DeviceLora::<bf16>::new(&s.stacked, &stream).unwrap();
    let short = &s.prompt[..s.prompt.len() / 2];
    let requests = [
        request(&s.prompt, 0, Strategy::Greedy, 9),
        request(short, 1, Strategy::COLD_DEFAULT, 14),
        request(
            &s.prompt,
            2,
            Strategy::Cold {
                alpha: 0.2,
                beta: 1.0,
            },
            5,
        ),
        request(short, -1, Strategy::Greedy, 11),
        request(&s.prompt, 1, Strategy::Greedy, 7),
    ];
    let alone: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| decode_alone(&s, &lora, &stream, r.clone()))
        .collect();
    let mut d = Decoder::new(&s.model, Some(&lora), stream.clone());
    // The last request joins late, while the others are mid-way.
    let ids: Vec<_> = requests[..4]
        .iter()
        .map(|r| d.submit(r.clone()).unwrap())
        .collect();
    for _ in 0..3 {
        d.step().unwrap();
    }
    let late = d.submit(requests[4].clone()).unwrap();
    d.run().unwrap();
    for (i, id) in ids.iter().chain([&late]).enumerate() {
        let out = d.output(*id).unwrap();
        assert_eq!(out.tokens, alone[i], "request {i}");
        assert_eq!(out.finish, Some(FinishReason::Length));
        assert_eq!(out.tokens.len(), requests[i].stop.max_new_tokens);
    }
}

/// Counts the token rows that reach the LoRA path (layer 0, q/k/v: once per forward).
struct CountingLora<'a> {
    inner: &'a dyn LoraDelta,
    rows: std::cell::Cell<usize>,
}

impl LoraDelta for CountingLora<'_> {
    fn num_adapters(&self) -> usize {
        self.inner.num_adapters()
    }

    fn add_delta(
        &self,
        layer: usize,
        group: ascend_cold::model::LoraGroup,
        x: &[f32],
        rows: &ascend_cold::model::LoraRows,
        y: &mut [f32],
    ) -> ascend_cold::Result<()> {
        if layer == 0 && group == ascend_cold::model::LoraGroup::Qkv {
            self.rows.set(self.rows.get() + rows.len());
        }
        self.inner.add_delta(layer, group, x, rows, y)
    }
}

#[test]
fn requests_on_one_prompt_share_its_prefill_and_keep_their_tokens() {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let s = fixture("tiny-mha-untied");
    let lora = DeviceLora::<bf16>::new(&s.stacked, &stream).unwrap();
    // What an evaluation submits: base greedy, adapter greedy and two CoLD settings on one prompt, and
    // a second adapter whose prefill cannot be shared with the first's.
    let requests = [
        request(&s.prompt, -1, Strategy::Greedy, 6),
        request(&s.prompt, 0, Strategy::Greedy, 6),
        request(&s.prompt, 0, Strategy::COLD_DEFAULT, 6),
        request(
            &s.prompt,
            0,
            Strategy::Cold {
                alpha: 0.3,
                beta: 1.0,
            },
            6,
        ),
        request(&s.prompt, 1, Strategy::Greedy, 6),
    ];
    let alone: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| decode_alone(&s, &lora, &stream, r.clone()))
        .collect();
    let counting = CountingLora {
        inner: &lora,
        rows: std::cell::Cell::new(0),
    };
    let mut d = Decoder::new(&s.model, Some(&counting), stream.clone());
    let ids: Vec<_> = requests
        .iter()
        .map(|r| d.submit(r.clone()).unwrap())
        .collect();
    d.step().unwrap();
    // Seven rows (two per CoLD request), three distinct (prompt, adapter) pairs: -1, 0 and 1.
    assert_eq!(counting.rows.get(), 3 * s.prompt.len());
    d.run().unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(d.output(*id).unwrap().tokens, alone[i], "request {i}");
    }
}

#[test]
fn greedy_decoding_reproduces_transformers_and_peft_tokens() {
    // f32 LoRA on the host: the fixture's f32 greedy ids exactly (model_fixtures.rs derives why).
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    for name in ["tiny-gqa-tied", "tiny-mha-untied"] {
        let s = fixture(name);
        let lora = ascend_cold::model::HostLora::new(&s.stacked);
        for case in s.reference["cases"].as_array().unwrap() {
            let adapter = case["adapter"]
                .as_str()
                .map_or(-1, |a| s.stacked.index_of(a).unwrap() as i64);
            let want: Vec<u32> = case["greedy_new_tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let got = decode_alone(
                &s,
                &lora,
                &stream,
                request(&s.prompt, adapter, Strategy::Greedy, want.len()),
            );
            assert_eq!(got, want, "{name} {:?}", case["adapter"]);
        }
    }
}

#[test]
fn bad_requests_are_refused_before_anything_runs() {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let s = fixture("tiny-gqa-tied");
    let lora = DeviceLora::<bf16>::new(&s.stacked, &stream).unwrap();
    let mut d = Decoder::new(&s.model, Some(&lora), stream);
    let vocab = s.model.config().vocab_size as u32;
    for (bad, what) in [
        (request(&[], 0, Strategy::Greedy, 4), "prompt"),
        (request(&[vocab], 0, Strategy::Greedy, 4), "prompt token"),
        (request(&s.prompt, 3, Strategy::Greedy, 4), "adapter index"),
        (
            request(
                &s.prompt,
                0,
                Strategy::Cold {
                    alpha: 0.0,
                    beta: 0.5,
                },
                4,
            ),
            "alpha",
        ),
        (
            request(
                &s.prompt,
                0,
                Strategy::Cold {
                    alpha: 0.1,
                    beta: -1.0,
                },
                4,
            ),
            "beta",
        ),
    ] {
        let err = d.submit(bad).unwrap_err().to_string();
        assert!(err.contains(what), "{what}: {err}");
    }
    assert!(d.is_idle());
}

/// KV bytes a request may come to hold, from the config alone: per row and position, keys and values
/// of every layer, `num_key_value_heads * head_dim` f32 each; positions = prompt + new tokens, at
/// most the context.
fn kv_need(config: &ascend_cold::model::LlamaConfig, r: &Request) -> usize {
    let rows = if matches!(r.strategy, Strategy::Cold { .. }) {
        2
    } else {
        1
    };
    let positions = (r.prompt.len() + r.stop.max_new_tokens).min(config.max_position_embeddings);
    config.num_hidden_layers
        * 2
        * config.num_key_value_heads
        * config.head_dim
        * 4
        * positions
        * rows
}

/// Fresh random requests: prompts of random tokens and lengths, every adapter and the base model,
/// greedy and CoLD, 1 to 8 new tokens.
fn random_requests(s: &Setup, lora: &dyn LoraDelta, n: usize, seed: u64) -> Vec<Request> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vocab = s.model.config().vocab_size as u32;
    let adapters = lora.num_adapters() as i64;
    (0..n)
        .map(|_| {
            let len = rng.gen_range(1..=2 * s.prompt.len());
            let prompt: Vec<u32> = (0..len).map(|_| rng.gen_range(0..vocab)).collect();
            let cold = rng.gen_bool(0.4);
            let adapter = if cold {
                rng.gen_range(0..adapters)
            } else {
                rng.gen_range(-1..adapters)
            };
            let strategy = if cold {
                Strategy::COLD_DEFAULT
            } else {
                Strategy::Greedy
            };
            request(&prompt, adapter, strategy, rng.gen_range(1..=8))
        })
        .collect()
}

/// What a bounded decode did: each request's tokens, and per step the rows and KV bytes (counted
/// independently, from the step's tokens) of the requests it ran.
struct Observed {
    tokens: Vec<Vec<u32>>,
    rows: Vec<usize>,
    kv: Vec<usize>,
    first_step: Vec<usize>,
}

fn decode_bounded(
    s: &Setup,
    lora: &dyn LoraDelta,
    stream: &Stream,
    requests: &[Request],
    limits: AdmissionLimits,
) -> Observed {
    let mut d = Decoder::new(&s.model, Some(lora), stream.clone())
        .with_limits(limits)
        .unwrap();
    let ids: Vec<RequestId> = requests
        .iter()
        .map(|r| d.submit(r.clone()).unwrap())
        .collect();
    let index = |id: RequestId| ids.iter().position(|&i| i == id).unwrap();
    let mut seen = Observed {
        tokens: vec![vec![]; requests.len()],
        rows: vec![],
        kv: vec![],
        first_step: vec![usize::MAX; requests.len()],
    };
    while !d.is_idle() {
        let announced = d.live_rows();
        let step = d.step().unwrap();
        let (mut rows, mut kv) = (0, 0);
        for t in &step {
            let i = index(t.id);
            let r = &requests[i];
            rows += if matches!(r.strategy, Strategy::Cold { .. }) {
                2
            } else {
                1
            };
            kv += kv_need(s.model.config(), r);
            seen.tokens[i].push(t.token);
            seen.first_step[i] = seen.first_step[i].min(seen.rows.len());
        }
        assert_eq!(rows, announced, "live_rows() before the step");
        seen.rows.push(rows);
        seen.kv.push(kv);
    }
    seen
}

#[test]
fn bounded_admission_keeps_rows_and_kv_per_step_within_the_limits_and_every_requests_tokens() {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let s = fixture("tiny-gqa-tied");
    let lora = DeviceLora::<bf16>::new(&s.stacked, &stream).unwrap();
    let requests = random_requests(&s, &lora, 40, 0x5eed_ad31);
    let alone: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| decode_alone(&s, &lora, &stream, r.clone()))
        .collect();
    let largest = requests
        .iter()
        .map(|r| kv_need(s.model.config(), r))
        .max()
        .unwrap();
    let total: usize = requests.iter().map(|r| kv_need(s.model.config(), r)).sum();
    for limits in [
        AdmissionLimits {
            max_rows: 5,
            max_kv_bytes: usize::MAX,
        },
        AdmissionLimits {
            max_rows: usize::MAX,
            max_kv_bytes: largest + largest / 2,
        },
        AdmissionLimits {
            max_rows: 2,
            max_kv_bytes: largest,
        },
    ] {
        let seen = decode_bounded(&s, &lora, &stream, &requests, limits);
        for (i, want) in alone.iter().enumerate() {
            assert_eq!(&seen.tokens[i], want, "request {i} under {limits:?}");
        }
        assert!(
            seen.rows.iter().all(|&r| r <= limits.max_rows),
            "{limits:?}: {:?}",
            seen.rows
        );
        assert!(
            seen.kv.iter().all(|&b| b <= limits.max_kv_bytes),
            "{limits:?}: {:?}",
            seen.kv
        );
        // Admission fills the room it has: some step runs within one request of the limit (not one
        // request at a time), and requests start in submission order.
        if limits.max_rows < requests.len() {
            assert!(
                seen.rows.iter().any(|&r| r + 1 >= limits.max_rows),
                "{limits:?}"
            );
        }
        if limits.max_kv_bytes < total {
            assert!(
                seen.kv.iter().any(|&b| b + largest > limits.max_kv_bytes),
                "{limits:?}"
            );
        }
        assert!(
            seen.first_step.windows(2).all(|w| w[0] <= w[1]),
            "not first in first out: {:?}",
            seen.first_step
        );
    }
}

#[test]
fn a_request_that_could_never_fit_is_refused_at_submit_with_its_need_and_the_limit() {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let s = fixture("tiny-gqa-tied");
    let lora = DeviceLora::<bf16>::new(&s.stacked, &stream).unwrap();
    let greedy = request(&s.prompt, 0, Strategy::Greedy, 6);
    let need = kv_need(s.model.config(), &greedy);
    let bounded = |max_rows, max_kv_bytes| {
        Decoder::new(&s.model, Some(&lora), stream.clone()).with_limits(AdmissionLimits {
            max_rows,
            max_kv_bytes,
        })
    };
    let err = bounded(4, need - 1)
        .unwrap()
        .submit(greedy.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{need} bytes")) && err.contains(&format!("{} bytes", need - 1)),
        "{err}"
    );
    let mut exact = bounded(4, need).unwrap();
    let id = exact.submit(greedy.clone()).unwrap();
    exact.run().unwrap();
    assert_eq!(
        exact.output(id).unwrap().tokens,
        decode_alone(&s, &lora, &stream, greedy)
    );
    let cold = request(&s.prompt, 0, Strategy::COLD_DEFAULT, 6);
    let err = bounded(1, usize::MAX)
        .unwrap()
        .submit(cold)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_rows") && err.contains('2'), "{err}");
    let err = bounded(0, usize::MAX).err().unwrap().to_string();
    assert!(err.contains("max_rows"), "{err}");
}
