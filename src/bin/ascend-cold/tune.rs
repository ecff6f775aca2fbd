//! `ascend-cold tune <kernel> --shape ...`: searches the valid tilings of one shape.
//!
//! Every candidate (`*Tiling::candidates`: the default first, then the knobs of the search space) runs
//! on the same random inputs and is checked against the f64 reference; a candidate out of tolerance is
//! never proposed. Ranking:
//! - on the emulator, a **cost model** over the emulator's per-block counters (the emulator does not
//!   time pipes, so wall time there says nothing about a board): the kernel takes the longer of its
//!   slowest block (its GM bytes at one core's bandwidth, or its vector repeats at one per cycle, plus an
//!   issue cost per DataCopy) and all GM bytes at HBM bandwidth, plus a fixed cost per launch. Blocks in
//!   use enter through the slowest block; UB use breaks ties (less is better). The constants are
//!   assumptions for a 910B-class chip ([`Model`]), not measurements; the output says so.
//! - on an NPU, device time from events around each launch: `--warmup` untimed runs, then the median of
//!   `--repeat` timed ones.
//!
//! The best candidate (ties: the earlier, so the default wins a tie) can be written as JSON
//! (`--out`), which `run --tiling`, `check --tiling`, the benches and `serde_json` into the tiling
//! struct accept.

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::harness::{
    self as common, compare_cold, compare_expand, compare_shrink, exec_cold, exec_expand,
    exec_shrink, parse_shape, random_vec, widen, write_tiling, DTypeArg, DeviceArg, Errors,
    KernelName, KernelShape, Measured, Reps, SHAPE_HELP,
};
use ascend_cold::ops::{LogitFloat, LoraFloat};
use ascend_cold::reference;
use ascend_cold::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use ascend_cold::{outfile, Device, Error, Provider, Result};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;

/// Arguments of `tune`.
#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// The kernel.
    #[arg(value_enum)]
    kernel: KernelName,
    #[arg(long, help = format!("The shape: {SHAPE_HELP}"))]
    shape: String,
    /// Element type (default f16).
    #[arg(long, default_value = "f16")]
    dtype: DTypeArg,
    /// Device: auto, emu[:N] or npu[:N].
    #[arg(long, default_value = "auto")]
    device: DeviceArg,
    /// Write the best tiling here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write every candidate's cost and the default's and best's here (JSON).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Rows of the table to print (the default's row is always printed).
    #[arg(long, default_value_t = 12)]
    top: usize,
    /// NPU timing: untimed launches per candidate.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// NPU timing: timed launches per candidate (the median counts).
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cold-score alpha.
    #[arg(long, default_value_t = 0.1)]
    alpha: f32,
    /// cold-score beta.
    #[arg(long, default_value_t = 0.5)]
    beta: f32,
    /// cold-score: tune the mode that writes the score rows.
    #[arg(long)]
    scores: bool,
    /// bgmv-expand: tune the overwrite mode (default: add into y).
    #[arg(long)]
    no_add: bool,
}

/// The cost model's constants (assumed for a 910B-class chip; see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// HBM bandwidth shared by all cores, bytes/s.
    pub hbm_bytes_per_s: f64,
    /// GM bandwidth one vector core can draw, bytes/s.
    pub core_bytes_per_s: f64,
    /// Vector repeats (256 bytes each) per second on one core.
    pub repeats_per_s: f64,
    /// Seconds of issue cost per DataCopy instruction not hidden by double buffering.
    pub copy_issue_s: f64,
    /// Seconds per kernel launch.
    pub launch_s: f64,
}

impl Model {
    /// The constants `tune` uses.
    pub const ASCEND_910B: Model = Model {
        hbm_bytes_per_s: 1.6e12,
        core_bytes_per_s: 100e9,
        repeats_per_s: 1.8e9,
        copy_issue_s: 50e-9,
        launch_s: 5e-6,
    };

    /// Modelled microseconds of the launches in `m`.
    pub fn cost_us(&self, m: &Measured) -> f64 {
        let mut slowest: f64 = 0.0;
        let mut total_bytes = 0u64;
        for c in m.counters() {
            let bytes = c.gm_read_bytes + c.gm_write_bytes;
            total_bytes += bytes;
            let t = (bytes as f64 / self.core_bytes_per_s)
                .max(c.vector_instrs as f64 / self.repeats_per_s)
                + c.copy_instrs as f64 * self.copy_issue_s;
            slowest = slowest.max(t);
        }
        let t = slowest.max(total_bytes as f64 / self.hbm_bytes_per_s)
            + m.launches.len() as f64 * self.launch_s;
        t * 1e6
    }
}

/// One candidate's result.
struct Row {
    index: usize,
    knobs: String,
    tiling: serde_json::Value,
    cost: f64,
    ok: bool,
    failure: Option<String>,
    gm_bytes: u64,
    max_vector: u64,
    ub_peak: u64,
    blocks: u32,
}

/// Runs `tune`; exit code 0.
pub fn run(args: &TuneArgs) -> Result<u8> {
    outfile::refuse_overlap(
        &[
            ("--out", args.out.as_deref()),
            ("--json", args.json.as_deref()),
        ],
        &[],
    )?;
    let shape = parse_shape(args.kernel, &args.shape)?;
    let dtype = DType::from(args.dtype);
    let (device, why) = common::open_device(args.device)?;
    let emulated = device.provider() == Provider::Emulator;
    let reps = if emulated {
        Reps::ONCE
    } else {
        Reps {
            warmup: args.warmup,
            repeat: args.repeat.max(1),
        }
    };
    println!("device: {device} ({why})");
    let model = Model::ASCEND_910B;
    let (measure, unit) = if emulated {
        println!(
            "ranking by a COST MODEL on the emulator's counters, not by time: max(slowest block, all GM \
             bytes / HBM) + launches; assumed HBM {:.1} TB/s, {:.0} GB/s per core, {:.1} G vector \
             repeats/s per core, {:.0} ns per DataCopy, {:.0} us per launch",
            model.hbm_bytes_per_s / 1e12,
            model.core_bytes_per_s / 1e9,
            model.repeats_per_s / 1e9,
            model.copy_issue_s * 1e9,
            model.launch_s * 1e6
        );
        ("cost model (emulator counters)", "model us")
    } else {
        println!(
            "ranking by device time: events around each launch, {} warm-up, median of {}",
            reps.warmup, reps.repeat
        );
        ("event median (device)", "median ms")
    };
    let rows = tune_rows(args, &device, shape, dtype, reps, &model)?;
    let mut order: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].ok).collect();
    order.sort_by(|&a, &b| {
        rows[a]
            .cost
            .total_cmp(&rows[b].cost)
            .then(rows[a].ub_peak.cmp(&rows[b].ub_peak))
            .then(a.cmp(&b))
    });
    let Some(&best) = order.first() else {
        return Err(Error::KernelFault {
            kernel: args.kernel.op().into(),
            detail: "no candidate tiling agreed with the reference".into(),
        });
    };
    println!(
        "{} {} {}: {} candidate tilings, {} within tolerance",
        args.kernel.op(),
        dtype.suffix(),
        shape,
        rows.len(),
        order.len()
    );
    println!(
        "{:>4} {:>12} {:<40} {:>7} {:>12} {:>9} {:>10} {:>8}",
        "rank", unit, "tiling", "blocks", "GM bytes", "max vec", "UB peak", "note"
    );
    let mut printed = 0;
    for (rank, &i) in order.iter().enumerate() {
        let r = &rows[i];
        if printed < args.top || r.index == 0 {
            println!(
                "{:>4} {:>12.3} {:<40} {:>7} {:>12} {:>9} {:>10} {:>8}",
                rank + 1,
                r.cost,
                r.knobs,
                r.blocks,
                r.gm_bytes,
                r.max_vector,
                r.ub_peak,
                if r.index == 0 { "default" } else { "" }
            );
            printed += 1;
        }
    }
    for r in rows.iter().filter(|r| !r.ok) {
        println!(
            "excluded (out of tolerance): {}: {}",
            r.knobs,
            r.failure.clone().unwrap_or_default()
        );
    }
    let default = &rows[0];
    let b = &rows[best];
    println!(
        "best: {} at {:.3} {unit}; default: {:.3} {unit} ({:.2}x){}",
        b.knobs,
        b.cost,
        default.cost,
        if b.cost > 0.0 {
            default.cost / b.cost
        } else {
            1.0
        },
        if emulated {
            "  [modelled, not timed]"
        } else {
            ""
        }
    );
    if let Some(p) = &args.out {
        write_tiling(p, &b.tiling)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &args.json {
        let v = serde_json::json!({
            "kernel": args.kernel.op(),
            "shape": shape.to_string(),
            "dtype": dtype.suffix(),
            "device": device.to_string(),
            "measure": measure,
            "unit": unit,
            "default": {"cost": default.cost, "ok": default.ok, "tiling": default.tiling},
            "best": {"cost": b.cost, "tiling": b.tiling},
            "candidates": rows.iter().map(|r| serde_json::json!({"cost": r.cost, "ok": r.ok, "tiling": r.tiling})).collect::<Vec<_>>(),
        });
        outfile::write_atomic(
            p,
            (serde_json::to_string_pretty(&v).expect("json") + "\n").as_bytes(),
        )?;
    }
    Ok(0)
}

fn row(
    index: usize,
    knobs: String,
    tiling: serde_json::Value,
    outcome: (Errors, Measured),
    emulated: bool,
    model: &Model,
) -> Row {
    let (errors, m) = outcome;
    let counters = m.counters();
    let (rd, wr) = m.gm_bytes();
    Row {
        index,
        knobs,
        tiling,
        cost: if emulated {
            model.cost_us(&m)
        } else {
            m.median_ms()
        },
        ok: errors.ok(),
        failure: errors.first_failure.clone(),
        gm_bytes: rd + wr,
        max_vector: counters.iter().map(|c| c.vector_instrs).max().unwrap_or(0),
        ub_peak: counters.iter().map(|c| c.ub_peak_bytes).max().unwrap_or(0),
        blocks: m.launches.iter().map(|l| l.blocks).max().unwrap_or(0),
    }
}

fn tune_rows(
    args: &TuneArgs,
    device: &Device,
    shape: KernelShape,
    dtype: DType,
    reps: Reps,
    model: &Model,
) -> Result<Vec<Row>> {
    let profile = device.profile()?;
    let emulated = device.provider() == Provider::Emulator;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let lora = |d: DType| -> Result<()> {
        if d == DType::F32 {
            Err(Error::parameter(
                "--dtype",
                "f16 or bf16 for the bgmv kernels",
                "f32",
            ))
        } else {
            Ok(())
        }
    };
    let mut rows = Vec::new();
    match shape {
        KernelShape::Shrink(s) => {
            lora(dtype)?;
            let cands = BgmvShrinkTiling::candidates(s, dtype, 1.0, &profile)?;
            let outs = match dtype {
                DType::F16 => shrink_runs::<f16>(device, s, &cands, reps, &mut rng)?,
                _ => shrink_runs::<bf16>(device, s, &cands, reps, &mut rng)?,
            };
            for (i, (t, o)) in cands.iter().zip(outs).enumerate() {
                let knobs = format!(
                    "rankSplit {} x {} tileH {}",
                    t.rank_split, t.rank_per_task, t.tile_h
                );
                rows.push(row(
                    i,
                    knobs,
                    serde_json::to_value(t).expect("json"),
                    o,
                    emulated,
                    model,
                ));
            }
        }
        KernelShape::Expand(s) => {
            lora(dtype)?;
            let add = !args.no_add;
            let cands = BgmvExpandTiling::candidates(s, dtype, add, &profile)?;
            let outs = match dtype {
                DType::F16 => expand_runs::<f16>(device, s, add, &cands, reps, &mut rng)?,
                _ => expand_runs::<bf16>(device, s, add, &cands, reps, &mut rng)?,
            };
            for (i, (t, o)) in cands.iter().zip(outs).enumerate() {
                let knobs = format!("hSplit {} x {} tileH {}", t.h_split, t.h_per_task, t.tile_h);
                rows.push(row(
                    i,
                    knobs,
                    serde_json::to_value(t).expect("json"),
                    o,
                    emulated,
                    model,
                ));
            }
        }
        KernelShape::Cold(s) => {
            let params = ColdParams::new(args.alpha, args.beta)?;
            let scores = args.scores;
            let cands =
                ColdScoreTiling::candidates(s.rows, s.vocab, dtype, params, scores, &profile)?;
            let p = (params, scores);
            let outs = match dtype {
                DType::F16 => cold_runs::<f16>(device, s, p, &cands, reps, &mut rng)?,
                DType::Bf16 => cold_runs::<bf16>(device, s, p, &cands, reps, &mut rng)?,
                DType::F32 => cold_runs::<f32>(device, s, p, &cands, reps, &mut rng)?,
            };
            for (i, (t, o)) in cands.iter().zip(outs).enumerate() {
                let knobs = format!(
                    "splits {} x {} tileLen {} resident {}",
                    t.splits, t.chunk_len, t.tile_len, t.resident
                );
                rows.push(row(
                    i,
                    knobs,
                    serde_json::to_value(t).expect("json"),
                    o,
                    emulated,
                    model,
                ));
            }
        }
    }
    Ok(rows)
}

fn shrink_runs<T: LoraFloat>(
    device: &Device,
    s: ShrinkShape,
    cands: &[BgmvShrinkTiling],
    reps: Reps,
    rng: &mut StdRng,
) -> Result<Vec<(Errors, Measured)>> {
    let x: Vec<T> = random_vec(rng, s.batch * s.hidden_in, 1.0);
    let w: Vec<T> = random_vec(rng, s.num_loras * s.rank * s.hidden_in, 0.5);
    let idx: Vec<i64> = (0..s.batch).map(|b| (b % s.num_loras) as i64).collect();
    let y0 = vec![0.0f32; s.batch * s.rank];
    let mut want = y0.clone();
    reference::bgmv_shrink(&x, &w, &idx, &mut want, s, 1.0)?;
    let (xf, wf) = (widen(&x), widen(&w));
    cands
        .iter()
        .map(|t| {
            let (got, m) = exec_shrink(device, &x, &w, &idx, &y0, s, 1.0, Some(t), reps)?;
            let e = compare_shrink(&xf, &wf, &idx, &y0, &got, &want, s, 1.0);
            Ok((e, m))
        })
        .collect()
}

fn expand_runs<T: LoraFloat>(
    device: &Device,
    s: ExpandShape,
    add: bool,
    cands: &[BgmvExpandTiling],
    reps: Reps,
    rng: &mut StdRng,
) -> Result<Vec<(Errors, Measured)>> {
    let x: Vec<f32> = random_vec(rng, s.batch * s.rank, 1.0);
    let w: Vec<T> = random_vec(rng, s.num_loras * s.hidden_out * s.rank, 0.5);
    let idx: Vec<i64> = (0..s.batch).map(|b| (b % s.num_loras) as i64).collect();
    let y0: Vec<T> = random_vec(rng, s.batch * s.hidden_full, 2.0);
    let mut want = y0.clone();
    reference::bgmv_expand(&x, &w, &idx, &mut want, s, add)?;
    let (xf, wf, y0f, wantf) = (widen(&x), widen(&w), widen(&y0), widen(&want));
    cands
        .iter()
        .map(|t| {
            let (got, m) = exec_expand(device, &x, &w, &idx, &y0, s, add, Some(t), reps)?;
            let e = compare_expand(T::DTYPE, &xf, &wf, &idx, &y0f, &widen(&got), &wantf, s, add);
            Ok((e, m))
        })
        .collect()
}

fn cold_runs<T: LogitFloat>(
    device: &Device,
    s: ColdShape,
    (params, scores): (ColdParams, bool),
    cands: &[ColdScoreTiling],
    reps: Reps,
    rng: &mut StdRng,
) -> Result<Vec<(Errors, Measured)>> {
    let e: Vec<T> = random_vec(rng, s.rows * s.vocab, 8.0);
    let a: Vec<T> = random_vec(rng, s.rows * s.vocab, 8.0);
    let picks = reference::cold_score(&e, &a, s, params, None)?;
    let ref_tokens: Vec<i64> = picks.iter().map(|p| p.token).collect();
    let (ef, af) = (widen(&e), widen(&a));
    cands
        .iter()
        .map(|t| {
            let (got, m) = exec_cold(device, &e, &a, s, params, scores, Some(t), reps)?;
            Ok((compare_cold(&ef, &af, s, params, &ref_tokens, &got), m))
        })
        .collect()
}
