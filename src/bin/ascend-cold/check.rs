//! `ascend-cold check <kernel>`: the kernel against the f64 reference on fresh random inputs, any shape
//! and tiling, printing the largest absolute and relative errors and the tolerance they were held to.
//!
//! Inputs are drawn in the kernel's dtype (so the reference sees exactly the kernel's operands), outputs
//! start poisoned (NaN bit patterns), a quarter of the rows have no adapter (index -1, which must come
//! back bit-identical), and about one cold-score row in seven holds a NaN or infinity (token -1). The
//! tolerances are derived in tests/ops_props.rs and implemented once in `common.rs`.

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::harness::{
    self as common, compare_cold, compare_expand, compare_shrink, exec_cold, exec_expand,
    exec_shrink, parse_shape, poison, random_indices, random_vec, read_tiling, widen, DTypeArg,
    DeviceArg, Errors, KernelName, KernelShape, Reps, SHAPE_HELP,
};
use ascend_cold::ops::{LogitFloat, LoraFloat};
use ascend_cold::reference;
use ascend_cold::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use ascend_cold::{Device, Error, Result};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// Exit code when a trial is out of tolerance.
pub const EXIT_MISMATCH: u8 = 4;

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The kernel.
    #[arg(value_enum)]
    kernel: KernelName,
    /// The shape; random per trial when absent (or the tiling's, with --tiling FILE).
    #[arg(long, help = format!("The shape: {SHAPE_HELP}. Random per trial when absent, or the tiling's with --tiling FILE"))]
    shape: Option<String>,
    /// `default` (the library's choice), `random` (a random valid candidate per trial), or a JSON file
    /// as `tune --out` writes it.
    #[arg(long, default_value = "default")]
    tiling: String,
    /// Trials, each with fresh inputs.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Seed of the first trial (trial i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Element type; random per trial when absent (f32 only for cold-score).
    #[arg(long)]
    dtype: Option<DTypeArg>,
    /// Device: auto, emu[:N] or npu[:N].
    #[arg(long, default_value = "auto")]
    device: DeviceArg,
    /// cold-score alpha (random from {1, 0.5, 0.1, 0.01, 1e-4} when absent).
    #[arg(long)]
    alpha: Option<f32>,
    /// cold-score beta (random from {0, 0.5, 1, 3} when absent).
    #[arg(long)]
    beta: Option<f32>,
    /// cold-score: also write and check the score rows (random when absent).
    #[arg(long)]
    scores: Option<bool>,
    /// bgmv-expand: add into y (random when absent).
    #[arg(long)]
    add: Option<bool>,
}

/// Which tiling a trial runs with.
#[derive(Debug, Clone)]
pub enum TilingChoice {
    /// The library's choice (`choose`).
    Default,
    /// A random valid candidate (`candidates`) per trial.
    Random,
    /// A bgmv_shrink tiling from a file.
    Shrink(BgmvShrinkTiling),
    /// A bgmv_expand tiling from a file.
    Expand(BgmvExpandTiling),
    /// A cold_score tiling from a file.
    Cold(ColdScoreTiling),
}

/// Per-trial knobs; `None` is drawn at random.
#[derive(Debug, Clone, Copy, Default)]
pub struct Knobs {
    /// cold-score alpha.
    pub alpha: Option<f32>,
    /// cold-score beta.
    pub beta: Option<f32>,
    /// cold-score score rows.
    pub scores: Option<bool>,
    /// bgmv-expand add.
    pub add: Option<bool>,
}

/// One trial's outcome.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The shape run.
    pub shape: KernelShape,
    /// The dtype run.
    pub dtype: DType,
    /// The tiling, as a label.
    pub tiling: String,
    /// Parameters drawn (scale, alpha, ...), as text.
    pub params: String,
    /// The comparison.
    pub errors: Errors,
}

impl Trial {
    /// One line for the table.
    pub fn line(&self) -> String {
        let e = &self.errors;
        format!(
            "{:<5} {:<34} {:<8} {:<30} max abs {:>9.3e}  max rel {:>9.3e}  tol {:>9.3e} ({:>5.1}% used)  {}",
            self.dtype.suffix(),
            self.shape.to_string(),
            self.tiling,
            self.params,
            e.max_abs,
            e.max_rel,
            e.tol_at_worst,
            100.0 * e.worst_ratio.min(9.99),
            if e.ok() { "ok".to_string() } else { format!("FAIL: {}", e.first_failure.clone().unwrap_or_default()) }
        )
    }
}

/// Runs `check`: exit code 0 when every trial is within tolerance, [`EXIT_MISMATCH`] otherwise.
pub fn run(args: &CheckArgs) -> Result<u8> {
    let choice = match args.tiling.as_str() {
        "default" => TilingChoice::Default,
        "random" => TilingChoice::Random,
        file => {
            let p = Path::new(file);
            match args.kernel {
                KernelName::BgmvShrink => TilingChoice::Shrink(read_tiling(p, "bgmv_shrink")?),
                KernelName::BgmvExpand => TilingChoice::Expand(read_tiling(p, "bgmv_expand")?),
                KernelName::ColdScore => TilingChoice::Cold(read_tiling(p, "cold_score")?),
            }
        }
    };
    let fixed = match &args.shape {
        Some(spec) => Some(parse_shape(args.kernel, spec)?),
        None => shape_of(&choice),
    };
    let (device, why) = common::open_device(args.device)?;
    println!("device: {device} ({why})");
    println!(
        "{} vs the f64 reference, {} trial(s) from seed {}; tolerances of tests/ops_props.rs",
        args.kernel.op(),
        args.trials,
        args.seed
    );
    let knobs = Knobs {
        alpha: args.alpha,
        beta: args.beta,
        scores: args.scores,
        add: args.add,
    };
    let mut failed = 0;
    for i in 0..args.trials {
        let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(i as u64));
        let shape = fixed.unwrap_or_else(|| random_shape(args.kernel, &mut rng));
        let dtype = match args.dtype {
            Some(d) => d.into(),
            None => random_dtype(args.kernel, &mut rng),
        };
        let t = trial(&device, shape, dtype, &choice, knobs, &mut rng)?;
        println!("trial {}/{}  {}", i + 1, args.trials, t.line());
        if !t.errors.ok() {
            failed += 1;
        }
    }
    if failed == 0 {
        println!("all {} trial(s) within tolerance", args.trials);
        Ok(0)
    } else {
        println!("{failed} of {} trial(s) out of tolerance", args.trials);
        Ok(EXIT_MISMATCH)
    }
}

fn shape_of(choice: &TilingChoice) -> Option<KernelShape> {
    Some(match choice {
        TilingChoice::Shrink(t) => KernelShape::Shrink(ShrinkShape {
            batch: t.batch as usize,
            hidden_in: t.hidden_in as usize,
            rank: t.rank as usize,
            num_loras: t.num_loras as usize,
        }),
        TilingChoice::Expand(t) => KernelShape::Expand(ExpandShape {
            batch: t.batch as usize,
            rank: t.rank as usize,
            hidden_out: t.hidden_out as usize,
            hidden_full: t.hidden_full as usize,
            slice_offset: t.slice_offset as usize,
            num_loras: t.num_loras as usize,
        }),
        TilingChoice::Cold(t) => KernelShape::Cold(ColdShape {
            rows: t.rows as usize,
            vocab: t.vocab as usize,
        }),
        TilingChoice::Default | TilingChoice::Random => return None,
    })
}

/// A random shape of modest size (the reference's work stays around a few million products).
pub fn random_shape(kernel: KernelName, rng: &mut StdRng) -> KernelShape {
    match kernel {
        KernelName::BgmvShrink => {
            let (h, r) = (rng.gen_range(1..=2100), rng.gen_range(1..=64));
            KernelShape::Shrink(ShrinkShape {
                batch: rng.gen_range(1..=32usize).min(1 + 2_000_000 / (h * r)),
                hidden_in: h,
                rank: r,
                num_loras: rng.gen_range(1..=8),
            })
        }
        KernelName::BgmvExpand => {
            let (h, r) = (rng.gen_range(1..=2100), rng.gen_range(1..=128));
            let extra = rng.gen_range(0..=40);
            KernelShape::Expand(ExpandShape {
                batch: rng.gen_range(1..=32usize).min(1 + 2_000_000 / (h * r)),
                rank: r,
                hidden_out: h,
                hidden_full: h + extra,
                slice_offset: rng.gen_range(0..=extra),
                num_loras: rng.gen_range(1..=8),
            })
        }
        KernelName::ColdScore => {
            let v = rng.gen_range(1..=70_000);
            KernelShape::Cold(ColdShape {
                rows: rng.gen_range(1..=16usize).min(1 + 1_000_000 / v),
                vocab: v,
            })
        }
    }
}

fn random_dtype(kernel: KernelName, rng: &mut StdRng) -> DType {
    match (kernel, rng.gen_range(0..3)) {
        (KernelName::ColdScore, 2) => DType::F32,
        (_, 0) => DType::F16,
        _ => DType::Bf16,
    }
}

/// One trial of `shape` in `dtype` on `device`.
pub fn trial(
    device: &Device,
    shape: KernelShape,
    dtype: DType,
    choice: &TilingChoice,
    knobs: Knobs,
    rng: &mut StdRng,
) -> Result<Trial> {
    shape.check_memory(
        "--shape",
        dtype.size() as usize,
        ascend_cold::harness::host_memory_budget(),
    )?;
    let profile = device.profile()?;
    let label = |is_random: bool| match choice {
        TilingChoice::Default => "default".to_string(),
        _ if is_random => "random".to_string(),
        _ => "file".to_string(),
    };
    let lora_only = |d: DType| -> Result<()> {
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
    match shape {
        KernelShape::Shrink(s) => {
            lora_only(dtype)?;
            let scale = rng.gen_range(0.1f32..4.0);
            let tiling = match choice {
                TilingChoice::Shrink(t) => Some(*t),
                TilingChoice::Random => {
                    let all = BgmvShrinkTiling::candidates(s, dtype, scale, &profile)?;
                    Some(all[rng.gen_range(0..all.len())])
                }
                _ => None,
            };
            let errors = match dtype {
                DType::F16 => shrink_trial::<f16>(device, s, scale, tiling.as_ref(), rng)?,
                _ => shrink_trial::<bf16>(device, s, scale, tiling.as_ref(), rng)?,
            };
            Ok(Trial {
                shape,
                dtype,
                tiling: label(matches!(choice, TilingChoice::Random)),
                params: format!("scale {scale:.3}"),
                errors,
            })
        }
        KernelShape::Expand(s) => {
            lora_only(dtype)?;
            let add = knobs.add.unwrap_or_else(|| rng.gen_bool(0.5));
            let tiling = match choice {
                TilingChoice::Expand(t) => Some(*t),
                TilingChoice::Random => {
                    let all = BgmvExpandTiling::candidates(s, dtype, add, &profile)?;
                    Some(all[rng.gen_range(0..all.len())])
                }
                _ => None,
            };
            let errors = match dtype {
                DType::F16 => expand_trial::<f16>(device, s, add, tiling.as_ref(), rng)?,
                _ => expand_trial::<bf16>(device, s, add, tiling.as_ref(), rng)?,
            };
            Ok(Trial {
                shape,
                dtype,
                tiling: label(matches!(choice, TilingChoice::Random)),
                params: format!("add {add}"),
                errors,
            })
        }
        KernelShape::Cold(s) => {
            let alpha = knobs
                .alpha
                .unwrap_or_else(|| [1.0f32, 0.5, 0.1, 0.01, 1e-4][rng.gen_range(0..5)]);
            let beta = knobs
                .beta
                .unwrap_or_else(|| [0.0f32, 0.5, 1.0, 3.0][rng.gen_range(0..4)]);
            let params = ColdParams::new(alpha, beta)?;
            let mut scores = knobs.scores.unwrap_or_else(|| rng.gen_bool(0.5));
            let tiling = match choice {
                TilingChoice::Cold(t) => Some(*t),
                TilingChoice::Random => {
                    let all = ColdScoreTiling::candidates(
                        s.rows, s.vocab, dtype, params, scores, &profile,
                    )?;
                    Some(all[rng.gen_range(0..all.len())])
                }
                _ => None,
            };
            // A resident tiling keeps the row for the score pass: it only exists with the score row.
            if tiling.is_some_and(|t| t.resident != 0) {
                scores = true;
            }
            let t = tiling.as_ref();
            let errors = match dtype {
                DType::F16 => cold_trial::<f16>(device, s, params, scores, t, rng)?,
                DType::Bf16 => cold_trial::<bf16>(device, s, params, scores, t, rng)?,
                DType::F32 => cold_trial::<f32>(device, s, params, scores, t, rng)?,
            };
            Ok(Trial {
                shape,
                dtype,
                tiling: label(matches!(choice, TilingChoice::Random)),
                params: format!("alpha {alpha} beta {beta} scores {scores}"),
                errors,
            })
        }
    }
}

fn shrink_trial<T: LoraFloat>(
    device: &Device,
    shape: ShrinkShape,
    scale: f32,
    tiling: Option<&BgmvShrinkTiling>,
    rng: &mut StdRng,
) -> Result<Errors> {
    let x: Vec<T> = random_vec(rng, shape.batch * shape.hidden_in, 1.0);
    let w: Vec<T> = random_vec(rng, shape.num_loras * shape.rank * shape.hidden_in, 0.5);
    let idx = random_indices(rng, shape.batch, shape.num_loras);
    let y0: Vec<f32> = poison(shape.batch * shape.rank);
    let mut want = y0.clone();
    reference::bgmv_shrink(&x, &w, &idx, &mut want, shape, scale)?;
    let (got, _) = exec_shrink(device, &x, &w, &idx, &y0, shape, scale, tiling, Reps::ONCE)?;
    Ok(compare_shrink(
        &widen(&x),
        &widen(&w),
        &idx,
        &y0,
        &got,
        &want,
        shape,
        scale,
    ))
}

fn expand_trial<T: LoraFloat>(
    device: &Device,
    shape: ExpandShape,
    add: bool,
    tiling: Option<&BgmvExpandTiling>,
    rng: &mut StdRng,
) -> Result<Errors> {
    let x: Vec<f32> = random_vec(rng, shape.batch * shape.rank, 1.0);
    let w: Vec<T> = random_vec(rng, shape.num_loras * shape.hidden_out * shape.rank, 0.5);
    let idx = random_indices(rng, shape.batch, shape.num_loras);
    // Poison outside the slice; inside, real values when adding (they are inputs), poison otherwise.
    let full = shape.hidden_full;
    let mut y0: Vec<T> = poison(shape.batch * full);
    if add {
        for b in 0..shape.batch {
            for o in 0..shape.hidden_out {
                y0[b * full + shape.slice_offset + o] = T::from_f64(rng.gen_range(-2.0..2.0));
            }
        }
    }
    let mut want = y0.clone();
    reference::bgmv_expand(&x, &w, &idx, &mut want, shape, add)?;
    let (got, _) = exec_expand(device, &x, &w, &idx, &y0, shape, add, tiling, Reps::ONCE)?;
    Ok(compare_expand(
        T::DTYPE,
        &widen(&x),
        &widen(&w),
        &idx,
        &widen(&y0),
        &widen(&got),
        &widen(&want),
        shape,
        add,
    ))
}

fn cold_trial<T: LogitFloat>(
    device: &Device,
    shape: ColdShape,
    params: ColdParams,
    scores: bool,
    tiling: Option<&ColdScoreTiling>,
    rng: &mut StdRng,
) -> Result<Errors> {
    let (rows, v) = (shape.rows, shape.vocab);
    let mut e: Vec<T> = random_vec(rng, rows * v, 8.0);
    let a: Vec<T> = random_vec(rng, rows * v, 8.0);
    for n in 0..rows {
        if rng.gen_bool(0.15) {
            let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.gen_range(0..3)];
            e[n * v + rng.gen_range(0..v)] = T::from_f64(bad);
        }
    }
    let picks = reference::cold_score(&e, &a, shape, params, None)?;
    let ref_tokens: Vec<i64> = picks.iter().map(|p| p.token).collect();
    let (got, _) = exec_cold(device, &e, &a, shape, params, scores, tiling, Reps::ONCE)?;
    Ok(compare_cold(
        &widen(&e),
        &widen(&a),
        shape,
        params,
        &ref_tokens,
        &got,
    ))
}
