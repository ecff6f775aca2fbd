//! The decoder's memory under admission control, measured with the fuzz suites' allocation tracker:
//! a queued request costs its request and nothing more (no caches until it is admitted), and a
//! step's memory follows the admission limits, not the number of requests waiting.

mod fuzz_common;

use ascend_cold::decode::{AdmissionLimits, Decoder, Request, SamplingParams, StopRules, Strategy};
use ascend_cold::model::{
    llama::random_model_files, LlamaConfig, LlamaModel, RopeScaling, WeightDtype,
};
use ascend_cold::{Device, Stream};
use fuzz_common::{measure, serial};

/// Many layers, so that a cache set up for a queued request (a per-layer vector each) would show:
/// 24 layers x 48 bytes of vector headers = 1,152 bytes a cache, above the per-request bound below.
fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 64,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 24,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        bos_token_id: Some(0),
        eos_token_ids: vec![1],
    }
}

const PROMPT: usize = 8;

fn request(model: &LlamaModel, i: usize) -> Request {
    Request {
        prompt: (0..PROMPT).map(|k| ((i * 7 + k * 3) % 64) as u32).collect(),
        adapter: -1,
        strategy: Strategy::Greedy,
        sampling: SamplingParams::default(),
        stop: StopRules {
            ignore_eos: true,
            ..StopRules::for_model(model.config(), 4)
        },
    }
}

/// Bytes held at once while submitting `n` requests, and while running the first step after.
fn submit_then_step(model: &LlamaModel, limits: AdmissionLimits, n: usize) -> (usize, usize) {
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let mut d = Decoder::new(model, None, stream)
        .with_limits(limits)
        .unwrap();
    let requests: Vec<Request> = (0..n).map(|i| request(model, i)).collect();
    let (r, submitted) = measure(|| {
        for r in requests {
            d.submit(r).unwrap();
        }
    });
    r.unwrap();
    let (r, stepped) = measure(|| d.step().unwrap());
    r.unwrap();
    (submitted.peak, stepped.peak)
}

#[test]
fn queued_requests_hold_only_themselves_and_a_steps_memory_follows_the_limits() {
    let _serial = serial();
    let model = LlamaModel::new(&random_model_files(&config(), 5), WeightDtype::F32).unwrap();
    let bounded = AdmissionLimits {
        max_rows: 4,
        max_kv_bytes: usize::MAX,
    };
    let (few_submitted, few_step) = submit_then_step(&model, bounded, 100);
    let (many_submitted, many_step) = submit_then_step(&model, bounded, 10_000);
    eprintln!(
        "submitting 100 / 10,000: {few_submitted} / {many_submitted} bytes; \
         first step with 96 / 9,996 queued: {few_step} / {many_step} bytes"
    );
    // A queued request: its prompt (4 bytes a token), and 1 KiB for the request's own fields (stop
    // rules, sampling), its sampler's state and its slot in the queue, doubled as the queue grows.
    // The requests were built before the measurement, so their prompts are not counted again:
    // this bounds what submitting adds.
    let per_request = 4 * PROMPT + 1024;
    assert!(
        many_submitted <= 10_000 * per_request,
        "{many_submitted} bytes for 10,000 queued requests"
    );
    // The first step runs 4 rows whether 96 or 9,996 wait behind them: the same allocations, up to
    // the outputs map and the queue (which only shrinks).
    assert!(
        many_step <= few_step + 4096,
        "a step with 9,996 queued held {many_step} bytes, with 96 queued {few_step}"
    );
    // Against the decoder without limits: one step of 10,000 rows holds far more.
    let (_, unbounded_step) = submit_then_step(&model, AdmissionLimits::UNBOUNDED, 10_000);
    eprintln!("first step of 10,000 unbounded: {unbounded_step} bytes");
    assert!(
        unbounded_step > 100 * many_step,
        "unbounded {unbounded_step} vs bounded {many_step}: the measurement does not see rows"
    );
}
