//! `DeviceLora` (one shrink and one expand per fused projection group, docs/ARCHITECTURE.md "The LoRA
//! path") against a float64 oracle written here from the stacked per-target tensors, on random adapter
//! sets: random ranks (a group's ranks adding up past one expand segment's 128, so its shrink is wider
//! than any segment), random target sets (untargeted projections between the segments, whose columns
//! must stay untouched), random batches mixing adapters and rows without one.
//!
//! Tolerance, per output column `o` of a row with adapter `i` (f16: u = 2^-11, bf16: u = 2^-8; the
//! kernels accumulate in f32, eps = 2^-24): the device rounds x, A and B to the dtype (each within u
//! relative), so the exact delta of the rounded operands is what the oracle computes, from the same
//! rounded values; the shrink's f32 sums of `in` products and the expand's of `R` products add at most
//! `(in + R) eps * sum_r |B_or| sum_j |A_rj x_j|`; the expand's output is rounded to the dtype (u times
//! the delta); adding it to y in f32 adds eps |y_o|. The tolerance is the sum of those, times 2 for the
//! terms' own rounding.

mod model_common;

use ascend_cold::model::{
    DeviceLora, HostLora, LlamaConfig, LoraDelta, LoraGroup, LoraRows, LoraTarget, StackedAdapters,
};
use ascend_cold::ops::LoraFloat;
use ascend_cold::{Device, Stream};
use model_common::{make_adapter, tiny_config, values};
use proptest::prelude::*;

const EPS: f64 = 1.0 / (1u64 << 24) as f64;

fn round<T: LoraFloat>(v: f32) -> f64 {
    T::from_f64(f64::from(v)).to_f64()
}

fn exact(v: f32) -> f64 {
    f64::from(v)
}

/// `y + delta` in float64 from the dtype-rounded x, A and B, and the tolerance above, per value of `y`.
/// How the device sees a value: rounded to its dtype (`round`), whose unit roundoff is `u`.
#[derive(Clone, Copy)]
struct Precision {
    round: fn(f32) -> f64,
    u: f64,
}

fn oracle(
    precision: Precision,
    stacked: &StackedAdapters,
    (layer, group): (usize, LoraGroup),
    x: &[f32],
    rows: &[i64],
    y: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let Precision { round, u } = precision;
    let config = stacked.config();
    let (inf, width) = group.dims(config);
    let mut want: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
    let mut tol: Vec<f64> = y.iter().map(|&v| 2.0 * EPS * f64::from(v).abs()).collect();
    for (target, column) in group.columns(config) {
        let Some(m) = stacked.module(layer, target) else {
            continue;
        };
        let (rank, outf) = (m.rank, m.out_features);
        for (row, &index) in rows.iter().enumerate() {
            if index < 0 {
                continue;
            }
            let i = index as usize;
            let xr: Vec<f64> = x[row * inf..(row + 1) * inf]
                .iter()
                .map(|&v| round(v))
                .collect();
            let a = |r: usize, j: usize| round(m.a[(i * rank + r) * inf + j]);
            let b = |o: usize, r: usize| round(m.b[(i * outf + o) * rank + r]);
            let t: Vec<f64> = (0..rank)
                .map(|r| (0..inf).map(|j| a(r, j) * xr[j]).sum())
                .collect();
            let t_abs: Vec<f64> = (0..rank)
                .map(|r| (0..inf).map(|j| (a(r, j) * xr[j]).abs()).sum())
                .collect();
            for o in 0..outf {
                let delta: f64 = (0..rank).map(|r| b(o, r) * t[r]).sum();
                let magnitude: f64 = (0..rank).map(|r| b(o, r).abs() * t_abs[r]).sum();
                let k = row * width + column + o;
                want[k] += delta;
                tol[k] += 2.0 * (u * delta.abs() + (inf + rank) as f64 * EPS * magnitude);
            }
        }
    }
    (want, tol)
}

fn check_dtype<T: LoraFloat>(
    stacked: &StackedAdapters,
    stream: &Stream,
    rows: &[i64],
    seed: u64,
    u: f64,
) -> Result<(), TestCaseError> {
    let config = stacked.config();
    let lora = DeviceLora::<T>::new(stacked, stream).unwrap();
    let checked = LoraRows::new(rows.to_vec(), stacked.len()).unwrap();
    for layer in 0..config.num_hidden_layers {
        for (g, group) in LoraGroup::ALL.into_iter().enumerate() {
            let (inf, width) = group.dims(config);
            let s = seed * 100 + (layer * 4 + g) as u64;
            let x = values(rows.len() * inf, s, 1.0);
            // Random, not zero: a value the device path should not touch must come back bit for bit.
            let y0 = values(rows.len() * width, s + 50, 2.0);
            let mut y = y0.clone();
            lora.add_delta(layer, group, &x, &checked, &mut y).unwrap();
            // The overlapped path (kernels queued, then the host's base writes y0, then the delta is
            // added): the same kernels on the same inputs, so the same values bit for bit.
            let mut projected = vec![f32::NAN; 3];
            lora.project(
                layer,
                group,
                &x,
                &checked,
                &mut |out: &mut Vec<f32>| out.clone_from(&y0),
                &mut projected,
            )
            .unwrap();
            prop_assert_eq!(
                projected.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "project and add_delta differ ({} {})",
                layer,
                group
            );
            let precision = Precision {
                round: round::<T>,
                u,
            };
            let (want, tol) = oracle(precision, stacked, (layer, group), &x, rows, &y0);
            for k in 0..y.len() {
                let err = (f64::from(y[k]) - want[k]).abs();
                prop_assert!(
                    err <= tol[k],
                    "layer {layer} {group} value {k}: got {} want {} (err {err:.3e} > tol {:.3e})",
                    y[k],
                    want[k],
                    tol[k]
                );
                // Untouched: rows without an adapter, and columns no adapter of the row adapts.
                if tol[k] == 2.0 * EPS * f64::from(y0[k]).abs() {
                    prop_assert_eq!(y[k].to_bits(), y0[k].to_bits(), "value {} was written", k);
                }
            }
        }
    }
    Ok(())
}

fn targets_from_mask(mask: u8) -> Vec<LoraTarget> {
    let picked: Vec<LoraTarget> = LoraTarget::ALL
        .into_iter()
        .filter(|t| mask & (1 << t.index()) != 0)
        .collect();
    if picked.is_empty() {
        vec![LoraTarget::Q]
    } else {
        picked
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Ranks up to 100: q+k+v (or gate+up) add up to more than one segment's 128 lanes.
    #[test]
    fn device_groups_match_the_per_target_oracle(
        ranks in prop::collection::vec(1usize..=100, 1..=3),
        masks in prop::collection::vec(1u8..128, 3),
        rows in prop::collection::vec(-1i64..3, 1..=5),
        seed in 0u64..1_000_000,
    ) {
        let config: LlamaConfig = tiny_config(2, true, ascend_cold::model::RopeScaling::None);
        let adapters: Vec<(String, ascend_cold::model::Adapter)> = ranks
            .iter()
            .zip(&masks)
            .enumerate()
            .map(|(i, (&r, &mask))| {
                let a = make_adapter(&config, r, 2.0 * r as f32, false, &targets_from_mask(mask), seed + i as u64);
                (format!("a{i}"), a)
            })
            .collect();
        let stacked = StackedAdapters::new(&adapters, &config).unwrap();
        let rows: Vec<i64> = rows.iter().map(|&i| if i >= 0 { i % stacked.len() as i64 } else { -1 }).collect();
        let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
        check_dtype::<half::f16>(&stacked, &stream, &rows, seed, 1.0 / 2048.0)?;
        check_dtype::<half::bf16>(&stacked, &stream, &rows, seed, 1.0 / 256.0)?;
    }
}

/// The host path is the device path's reference in the model tests: it must agree with the oracle to
/// f32 rounding (u = eps: no dtype rounding besides f32's own).
#[test]
fn host_lora_matches_the_per_target_oracle() {
    let config = tiny_config(2, true, ascend_cold::model::RopeScaling::None);
    let a = make_adapter(&config, 5, 10.0, false, &[LoraTarget::Q, LoraTarget::V], 1);
    let b = make_adapter(&config, 70, 3.0, true, &LoraTarget::ALL, 2);
    let stacked = StackedAdapters::new(&[("a".into(), a), ("b".into(), b)], &config).unwrap();
    let rows = [1, -1, 0, 1];
    let lora = HostLora::new(&stacked);
    let checked = LoraRows::new(rows.to_vec(), 2).unwrap();
    for group in LoraGroup::ALL {
        let (inf, width) = group.dims(&config);
        let x = values(rows.len() * inf, 7, 1.0);
        let y0 = values(rows.len() * width, 8, 2.0);
        let mut y = y0.clone();
        lora.add_delta(1, group, &x, &checked, &mut y).unwrap();
        let precision = Precision {
            round: exact,
            u: EPS,
        };
        let (want, tol) = oracle(precision, &stacked, (1, group), &x, &rows, &y0);
        for k in 0..y.len() {
            let err = (f64::from(y[k]) - want[k]).abs();
            assert!(
                err <= tol[k],
                "{group} value {k}: err {err:.3e} > {:.3e}",
                tol[k]
            );
        }
    }
}

/// `project` checks what `base` wrote: a base output of the wrong length is an error naming both
/// lengths, and the device is left ready for the next call.
#[test]
fn project_rejects_a_base_output_of_the_wrong_length() {
    let config = tiny_config(2, true, ascend_cold::model::RopeScaling::None);
    let a = make_adapter(&config, 4, 8.0, false, &LoraTarget::ALL, 3);
    let stacked = StackedAdapters::new(&[("a".into(), a)], &config).unwrap();
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let lora = DeviceLora::<half::bf16>::new(&stacked, &stream).unwrap();
    let rows = LoraRows::new(vec![0, 0], 1).unwrap();
    let (inf, width) = LoraGroup::O.dims(&config);
    let x = values(2 * inf, 5, 1.0);
    let mut y = Vec::new();
    let err = lora
        .project(
            1,
            LoraGroup::O,
            &x,
            &rows,
            &mut |out: &mut Vec<f32>| out.resize(width, 0.0),
            &mut y,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("2 x {width}")) && err.contains(&width.to_string()),
        "{err}"
    );
    // The next call works and matches add_delta.
    let y0 = values(2 * width, 6, 1.0);
    let mut want = y0.clone();
    lora.add_delta(1, LoraGroup::O, &x, &rows, &mut want)
        .unwrap();
    lora.project(
        1,
        LoraGroup::O,
        &x,
        &rows,
        &mut |out: &mut Vec<f32>| out.clone_from(&y0),
        &mut y,
    )
    .unwrap();
    assert_eq!(y, want);
}

/// A target whose rank the expand kernel cannot take (over 128 lanes per segment) is refused when the
/// adapters are uploaded, naming the rank, the target and the layer, not at every decode step.
#[test]
fn a_target_rank_over_128_is_refused_at_upload() {
    let config = tiny_config(2, true, ascend_cold::model::RopeScaling::None);
    let a = make_adapter(&config, 130, 8.0, false, &[LoraTarget::V], 4);
    let stacked = StackedAdapters::new(&[("a".into(), a)], &config).unwrap();
    let stream = Stream::new(&Device::emulator().unwrap()).unwrap();
    let err = match DeviceLora::<half::bf16>::new(&stacked, &stream) {
        Ok(_) => panic!("a rank-130 target was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("130") && err.contains("128") && err.contains("v_proj"),
        "{err}"
    );
}
