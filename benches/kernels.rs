//! Criterion benchmarks of the three kernels through the ops API, on the shapes LoRA runtimes see
//! (`ascend_cold::tiling::bench_shapes`), with throughput in bytes (every input read once and every
//! output written once: the minimal traffic of docs/KERNELS.md).
//!
//! - Always on the emulator; also on NPU N when `ASCEND_TEST_DEVICE=N` is set.
//! - Timing is device-side: events recorded around a batch of launches on one stream (on the emulator
//!   its events read the host clock when the stream reaches them).
//! - `ASCEND_BENCH_FULL=1`: every shape (hidden 2048 to 8192, rank 8 to 64, batch 1 to 64, 1 to 16
//!   adapters; vocab 32000, 49152, 151936); by default a short list, since these machines have 2 cores.
//! - `ASCEND_BENCH_TILINGS=a.json,b.json`: tilings from `ascend-cold tune --out`; each one is benched,
//!   next to the default, on the shape it was tuned for.
//!
//! `cargo bench --bench kernels`, or `-- bgmv_shrink` for one group.

use ascend_cold::contracts::ColdParams;
use ascend_cold::harness as common;

use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::tiling::{
    bench_shapes, BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType,
};
use ascend_cold::{Device, DeviceBuffer, Event, Stream};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use rand::{rngs::StdRng, SeedableRng};
use std::time::Duration;

fn devices() -> Vec<Device> {
    let mut list = vec![Device::emulator().expect("the emulator is always there")];
    if let Ok(id) = std::env::var("ASCEND_TEST_DEVICE") {
        list.push(Device::npu(id.parse().expect("ASCEND_TEST_DEVICE=<id>")).expect("NPU"));
    }
    list
}

fn full() -> bool {
    std::env::var_os("ASCEND_BENCH_FULL").is_some_and(|v| v != "0")
}

/// The tilings of `ASCEND_BENCH_TILINGS` that parse as `T`.
fn tuned<T: serde::de::DeserializeOwned>() -> Vec<T> {
    std::env::var("ASCEND_BENCH_TILINGS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect()
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    let quick = !full();
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 300 } else { 1000 }))
        .measurement_time(Duration::from_secs(if quick { 2 } else { 5 }));
    g
}

/// Device time of `iters` calls of `launch`, from events on `stream`.
fn device_time(stream: &Stream, iters: u64, mut launch: impl FnMut()) -> Duration {
    let device = stream.device();
    let (start, end) = (Event::new(device).unwrap(), Event::new(device).unwrap());
    start.record(stream).unwrap();
    for _ in 0..iters {
        launch();
    }
    end.record(stream).unwrap();
    end.synchronize().unwrap();
    stream.synchronize().unwrap();
    Duration::from_secs_f64(f64::from(start.elapsed_ms(&end).unwrap()).max(0.0) * 1e-3)
}

fn shrink_label(s: &ShrinkShape) -> String {
    format!("b{}_h{}_r{}_l{}", s.batch, s.hidden_in, s.rank, s.num_loras)
}

fn bgmv_shrink(c: &mut Criterion) {
    let mut g = configure(c, "bgmv_shrink");
    let extra: Vec<BgmvShrinkTiling> = tuned();
    for device in devices() {
        let stream = Stream::new(&device).unwrap();
        for s in bench_shapes(full()).shrink {
            let mut rng = StdRng::seed_from_u64(1);
            let x: Vec<f16> = common::random_vec(&mut rng, s.batch * s.hidden_in, 1.0);
            let w: Vec<f16> = common::random_vec(&mut rng, s.num_loras * s.rank * s.hidden_in, 0.5);
            let idx: Vec<i64> = (0..s.batch).map(|b| (b % s.num_loras) as i64).collect();
            let (dx, dw) = (
                DeviceBuffer::from_host(&device, &x).unwrap(),
                DeviceBuffer::from_host(&device, &w).unwrap(),
            );
            let mut dy = DeviceBuffer::<f32>::zeroed(&device, s.batch * s.rank).unwrap();
            g.throughput(Throughput::Bytes(common::shrink_min_bytes(
                s,
                DType::F16,
                &idx,
            )));
            let profile = device.profile().unwrap();
            let mut variants: Vec<(String, Option<BgmvShrinkTiling>)> =
                vec![("default".into(), None)];
            for t in extra
                .iter()
                .filter(|t| t.validate(s, DType::F16, &profile).is_ok())
            {
                variants.push(("tuned".into(), Some(*t)));
            }
            for (label, tiling) in variants {
                let id = BenchmarkId::new(format!("{device}/f16/{label}"), shrink_label(&s));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        device_time(&stream, iters, || {
                            ops::bgmv_shrink(
                                &stream,
                                ops::BgmvShrink {
                                    x: dx.view(),
                                    weights: dw.view(),
                                    indices: AdapterIndices::Host(&idx),
                                    y: dy.view_mut(),
                                    shape: s,
                                    scale: 1.0,
                                },
                                tiling.as_ref(),
                            )
                            .unwrap()
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

fn expand_label(s: &ExpandShape) -> String {
    format!(
        "b{}_h{}_r{}_l{}",
        s.batch, s.hidden_out, s.rank, s.num_loras
    )
}

fn bgmv_expand(c: &mut Criterion) {
    let mut g = configure(c, "bgmv_expand");
    let extra: Vec<BgmvExpandTiling> = tuned();
    for device in devices() {
        let stream = Stream::new(&device).unwrap();
        for s in bench_shapes(full()).expand {
            let mut rng = StdRng::seed_from_u64(2);
            let x: Vec<f32> = common::random_vec(&mut rng, s.batch * s.rank, 1.0);
            let w: Vec<f16> =
                common::random_vec(&mut rng, s.num_loras * s.hidden_out * s.rank, 0.5);
            let idx: Vec<i64> = (0..s.batch).map(|b| (b % s.num_loras) as i64).collect();
            let (dx, dw) = (
                DeviceBuffer::from_host(&device, &x).unwrap(),
                DeviceBuffer::from_host(&device, &w).unwrap(),
            );
            let mut dy = DeviceBuffer::<f16>::zeroed(&device, s.batch * s.hidden_full).unwrap();
            g.throughput(Throughput::Bytes(common::expand_min_bytes(
                s,
                DType::F16,
                &idx,
                true,
            )));
            let profile = device.profile().unwrap();
            let mut variants: Vec<(String, Option<BgmvExpandTiling>)> =
                vec![("default".into(), None)];
            for t in extra
                .iter()
                .filter(|t| t.validate(s, DType::F16, &profile).is_ok())
            {
                variants.push(("tuned".into(), Some(*t)));
            }
            for (label, tiling) in variants {
                let id = BenchmarkId::new(format!("{device}/f16/{label}"), expand_label(&s));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        device_time(&stream, iters, || {
                            ops::bgmv_expand(
                                &stream,
                                ops::BgmvExpand {
                                    x: dx.view(),
                                    weights: dw.view(),
                                    indices: AdapterIndices::Host(&idx),
                                    y: dy.view_mut(),
                                    shape: s,
                                    add_inputs: true,
                                },
                                tiling.as_ref(),
                            )
                            .unwrap()
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

fn cold_score(c: &mut Criterion) {
    let mut g = configure(c, "cold_score");
    let extra: Vec<ColdScoreTiling> = tuned();
    let (alpha, beta) = (0.1, 0.5);
    for device in devices() {
        let stream = Stream::new(&device).unwrap();
        for s in bench_shapes(full()).cold {
            let ColdShape { rows, vocab } = s;
            let mut rng = StdRng::seed_from_u64(3);
            let e: Vec<f32> = common::random_vec(&mut rng, rows * vocab, 8.0);
            let a: Vec<f32> = common::random_vec(&mut rng, rows * vocab, 8.0);
            let (de, da) = (
                DeviceBuffer::from_host(&device, &e).unwrap(),
                DeviceBuffer::from_host(&device, &a).unwrap(),
            );
            let mut tokens = DeviceBuffer::<i64>::zeroed(&device, rows).unwrap();
            let mut best = DeviceBuffer::<f32>::zeroed(&device, rows).unwrap();
            g.throughput(Throughput::Bytes(common::cold_min_bytes(
                s,
                DType::F32,
                false,
            )));
            let profile = device.profile().unwrap();
            let mut variants: Vec<(String, Option<ColdScoreTiling>)> =
                vec![("default".into(), None)];
            // A tuned tiling carries the parameters it was tuned with; the op launches it with
            // these (it writes them into the tiling), so it is checked with them.
            let params = ColdParams::new(alpha, beta).unwrap();
            let relaunched = |t: &ColdScoreTiling| ColdScoreTiling {
                ln_alpha: params.ln_alpha(),
                beta: params.beta(),
                ..*t
            };
            for t in extra.iter().map(relaunched).filter(|t| {
                t.resident == 0
                    && t.validate(rows, vocab, DType::F32, params, &profile)
                        .is_ok()
            }) {
                variants.push(("tuned".into(), Some(t)));
            }
            for (label, tiling) in variants {
                let id = BenchmarkId::new(
                    format!("{device}/f32/tokens/{label}"),
                    format!("n{rows}_v{vocab}"),
                );
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        device_time(&stream, iters, || {
                            let out = ColdOutputs {
                                tokens: tokens.view_mut(),
                                best_scores: best.view_mut(),
                                scores: None,
                            };
                            ops::cold_score(
                                &stream,
                                de.view(),
                                da.view(),
                                s,
                                params,
                                out,
                                tiling.as_ref(),
                            )
                            .unwrap()
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(kernels, bgmv_shrink, bgmv_expand, cold_score);
criterion_main!(kernels);
