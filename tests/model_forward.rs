//! The host model against a naive float64 reference, batching and caching invariants, LoRA through
//! `HostLora` against merged weights, and input validation.

mod model_common;

use ascend_cold::model::{
    HostLora, KvCache, LlamaModel, LoraDelta, LoraGroup, LoraRows, LoraTarget, RopeScaling, Row,
    StackedAdapters, WeightDtype,
};
use ascend_cold::Error;
use model_common::*;

const PROMPT: [u32; 7] = [0, 5, 17, 3, 39, 22, 8];

fn last_logits(
    model: &LlamaModel,
    tokens: &[u32],
    adapter: i64,
    lora: Option<&dyn LoraDelta>,
) -> Vec<f32> {
    let mut cache = model.new_cache();
    let mut rows = [Row {
        tokens,
        cache: &mut cache,
        adapter,
    }];
    model.forward(&mut rows, lora).unwrap().row(0).to_vec()
}

/// f32 vs the float64 reference. Each logit is a sum of `hidden` products after `2 * layers`
/// residual updates; with unit-scale activations and weights of variance 1/fan_in, f32 rounding of
/// each dot product contributes about `sqrt(n) * 2^-24 * |terms|`, far below 1e-5 for n <= 48, and
/// the layers add a few such terms. 1e-4 relative to the largest logit leaves ~10x margin.
#[test]
fn f32_forward_matches_f64_reference_for_gqa_mha_tied_untied_and_scaled_rope() {
    for (kv, tied, scaling) in [
        (2, true, RopeScaling::None),
        (4, false, RopeScaling::None),
        (1, false, RopeScaling::Linear { factor: 4.0 }),
    ] {
        let mut files = tiny_files(kv, tied, 7);
        files.config.rope_scaling = scaling.clone();
        let model = LlamaModel::new(&files, WeightDtype::F32).unwrap();
        let got = last_logits(&model, &PROMPT, -1, None);
        let want = reference_logits(&files, &PROMPT);
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&got, &want);
        assert!(
            d <= 1e-4 * scale,
            "kv={kv} tied={tied} {scaling:?}: diff {d}, scale {scale}"
        );
    }
}

/// bf16 weights: each weight carries a relative rounding error of at most 2^-9 (uniform, so ~2^-9/sqrt(3)
/// rms); a dot product of n terms then errs by about 2^-9/sqrt(3) * sqrt(sum w_i^2 x_i^2), i.e. ~0.1-0.3%
/// of the output's typical size, compounded over 2 layers and the LM head: 2% of the largest logit is a
/// safe bound, and still catches layout errors (those are O(100%)).
#[test]
fn bf16_forward_is_close_to_reference() {
    let files = tiny_files(2, false, 11);
    let model = LlamaModel::new(&files, WeightDtype::Bf16).unwrap();
    let got = last_logits(&model, &PROMPT, -1, None);
    let want = reference_logits(&files, &PROMPT);
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let d = max_abs_diff(&got, &want);
    assert!(d <= 2e-2 * scale, "diff {d}, scale {scale}");
    assert!(
        model.resident_bytes()
            < LlamaModel::new(&files, WeightDtype::F32)
                .unwrap()
                .resident_bytes()
    );
}

#[test]
fn prefill_then_decode_equals_one_long_prefill() {
    let files = tiny_files(2, true, 3);
    let model = LlamaModel::new(&files, WeightDtype::F32).unwrap();
    let full = last_logits(&model, &PROMPT, -1, None);
    let mut cache = model.new_cache();
    let mut logits = None;
    for chunk in [&PROMPT[..3], &PROMPT[3..4], &PROMPT[4..]] {
        let mut rows = [Row {
            tokens: chunk,
            cache: &mut cache,
            adapter: -1,
        }];
        logits = Some(model.forward(&mut rows, None).unwrap());
    }
    assert_eq!(cache.len(), PROMPT.len());
    let stepwise = logits.unwrap().row(0).to_vec();
    let d = stepwise
        .iter()
        .zip(&full)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-5, "diff {d}");
}

fn two_adapters(config: &ascend_cold::model::LlamaConfig) -> StackedAdapters {
    let a = make_adapter(config, 2, 4.0, false, &[LoraTarget::Q, LoraTarget::V], 1);
    let b = make_adapter(config, 6, 8.0, true, &LoraTarget::ALL, 2);
    StackedAdapters::new(&[("a".into(), a), ("b".into(), b)], config).unwrap()
}

#[test]
fn host_lora_matches_merged_weights() {
    let files = tiny_files(2, false, 5);
    let config = files.config.clone();
    let a = make_adapter(&config, 2, 4.0, false, &[LoraTarget::Q, LoraTarget::V], 1);
    let b = make_adapter(&config, 6, 8.0, true, &LoraTarget::ALL, 2);
    let stacked =
        StackedAdapters::new(&[("a".into(), a.clone()), ("b".into(), b.clone())], &config).unwrap();
    let lora = HostLora::new(&stacked);
    let model = LlamaModel::new(&files, WeightDtype::F32).unwrap();
    for (i, adapter) in [a, b].iter().enumerate() {
        let got = last_logits(&model, &PROMPT, i as i64, Some(&lora));
        let want = reference_logits(&merge(&files, adapter), &PROMPT);
        let base = reference_logits(&files, &PROMPT);
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-4 * scale, "adapter {i}: diff {d}");
        // The adapter really moves the logits (the test is not vacuous).
        assert!(
            max_abs_diff(&got, &base) > 100.0 * d.max(1e-6),
            "adapter {i} has no effect"
        );
    }
}

#[test]
fn batched_rows_equal_each_row_alone() {
    let files = tiny_files(2, true, 9);
    let stacked = two_adapters(&files.config);
    let lora = HostLora::new(&stacked);
    for dtype in [WeightDtype::F32, WeightDtype::Bf16] {
        let model = LlamaModel::new(&files, dtype).unwrap();
        // Different prompt lengths and adapters, then a decode step with a cache of each length.
        let prompts: [(&[u32], i64); 4] = [
            (&PROMPT, 0),
            (&PROMPT[..3], -1),
            (&[4, 9, 30, 2, 2], 1),
            (&[7], 0),
        ];
        let alone: Vec<Vec<f32>> = prompts
            .iter()
            .map(|&(p, a)| last_logits(&model, p, a, Some(&lora)))
            .collect();
        let mut caches: Vec<KvCache> = prompts.iter().map(|_| model.new_cache()).collect();
        let mut rows: Vec<Row> = caches
            .iter_mut()
            .zip(&prompts)
            .map(|(cache, &(tokens, adapter))| Row {
                tokens,
                cache,
                adapter,
            })
            .collect();
        let batched = model.forward(&mut rows, Some(&lora)).unwrap();
        for (i, want) in alone.iter().enumerate() {
            let d = batched
                .row(i)
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-5, "{dtype:?} row {i}: diff {d}");
        }
        // Decode step for all rows at once vs alone.
        let next = [3u32, 11, 25, 38];
        let mut rows: Vec<Row> = caches
            .iter_mut()
            .zip(&prompts)
            .zip(&next)
            .map(|((cache, &(_, adapter)), t)| Row {
                tokens: std::slice::from_ref(t),
                cache,
                adapter,
            })
            .collect();
        let step = model.forward(&mut rows, Some(&lora)).unwrap();
        for (i, &(p, a)) in prompts.iter().enumerate() {
            let seq: Vec<u32> = p.iter().copied().chain([next[i]]).collect();
            let want = last_logits(&model, &seq, a, Some(&lora));
            let d = step
                .row(i)
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-5, "{dtype:?} decode row {i}: diff {d}");
        }
    }
}

#[test]
fn bad_inputs_are_errors_and_leave_caches_untouched() {
    let files = tiny_files(2, true, 1);
    let model = LlamaModel::new(&files, WeightDtype::F32).unwrap();
    let stacked = two_adapters(&files.config);
    let lora = HostLora::new(&stacked);
    let mut cache = model.new_cache();
    let mut rows = [Row {
        tokens: &PROMPT[..2],
        cache: &mut cache,
        adapter: -1,
    }];
    model.forward(&mut rows, None).unwrap();

    let cases: Vec<(Vec<u32>, i64, bool, &str)> = vec![
        (vec![40], -1, false, "token id"),
        (vec![], -1, false, "tokens"),
        (vec![1], 0, false, "adapter index"),  // no lora given
        (vec![1], 2, true, "adapter index"),   // only 2 adapters
        (vec![1; 63], -1, false, "positions"), // 2 + 63 > 64
    ];
    for (tokens, adapter, with_lora, what) in cases {
        let mut rows = [Row {
            tokens: &tokens,
            cache: &mut cache,
            adapter,
        }];
        let err = model
            .forward(&mut rows, with_lora.then_some(&lora as &dyn LoraDelta))
            .unwrap_err();
        match (&err, what) {
            (Error::BadIndex { row: 0, .. }, "adapter index") => {}
            (Error::BadParameter { name, .. }, _) if *name == what => {}
            _ => panic!("{what}: unexpected {err}"),
        }
        assert_eq!(cache.len(), 2, "{what}: cache modified");
    }
    // A cache of another model.
    let other = tiny_files(4, true, 1);
    let mut foreign = KvCache::new(&other.config);
    let mut rows = [Row {
        tokens: &PROMPT[..1],
        cache: &mut foreign,
        adapter: -1,
    }];
    assert!(matches!(
        model.forward(&mut rows, None),
        Err(Error::BadParameter { name: "cache", .. })
    ));
}

/// A LoRA implementation that fails on the third call: the caches must roll back.
struct Failing(std::cell::Cell<usize>);
impl LoraDelta for Failing {
    fn num_adapters(&self) -> usize {
        1
    }
    fn add_delta(
        &self,
        _: usize,
        _: LoraGroup,
        _: &[f32],
        _: &LoraRows,
        _: &mut [f32],
    ) -> ascend_cold::Result<()> {
        self.0.set(self.0.get() + 1);
        if self.0.get() == 3 {
            return Err(Error::parameter("test", "no failure", "failure"));
        }
        Ok(())
    }
}

#[test]
fn a_failing_lora_rolls_caches_back() {
    let files = tiny_files(2, true, 1);
    let model = LlamaModel::new(&files, WeightDtype::F32).unwrap();
    let mut cache = model.new_cache();
    let mut rows = [Row {
        tokens: &PROMPT[..2],
        cache: &mut cache,
        adapter: -1,
    }];
    model.forward(&mut rows, None).unwrap();
    let mut rows = [Row {
        tokens: &PROMPT[2..],
        cache: &mut cache,
        adapter: 0,
    }];
    assert!(model
        .forward(&mut rows, Some(&Failing(Default::default())))
        .is_err());
    assert_eq!(cache.len(), 2);
    // And the rolled-back cache still gives the right answer.
    let mut rows = [Row {
        tokens: &PROMPT[2..],
        cache: &mut cache,
        adapter: -1,
    }];
    let got = model.forward(&mut rows, None).unwrap().row(0).to_vec();
    let want = last_logits(&model, &PROMPT, -1, None);
    assert_eq!(got, want);
}

#[test]
fn host_lora_rejects_bad_arguments_without_writing() {
    let files = tiny_files(2, true, 1);
    let config = &files.config;
    let stacked = two_adapters(config);
    let lora = HostLora::new(&stacked);
    assert!(matches!(
        LoraRows::new(vec![0, 2], 2),
        Err(Error::BadIndex {
            row: 1,
            index: 2,
            num_adapters: 2
        })
    ));
    let (inf, outf) = LoraGroup::Qkv.dims(config);
    let both = LoraRows::new(vec![0, 1], 2).unwrap();
    let x = vec![1.0; 2 * inf];
    let mut y = vec![0.5; 2 * outf];
    assert!(matches!(
        lora.add_delta(0, LoraGroup::Qkv, &x[1..], &both, &mut y),
        Err(Error::BadShape { .. })
    ));
    assert!(lora
        .add_delta(2, LoraGroup::Qkv, &x, &both, &mut y)
        .is_err());
    let too_many = LoraRows::new(vec![0, 2], 3).unwrap();
    assert!(matches!(
        lora.add_delta(0, LoraGroup::Qkv, &x, &too_many, &mut y),
        Err(Error::BadParameter { .. })
    ));
    assert!(y.iter().all(|&v| v == 0.5));
    // Adapter "a" targets q and v, not k: its row changes q's and v's columns, not k's; "b" all.
    let columns: Vec<(LoraTarget, usize)> = LoraGroup::Qkv.columns(config).collect();
    let mut y = vec![0.0; outf];
    lora.add_delta(
        0,
        LoraGroup::Qkv,
        &x[..inf],
        &LoraRows::new(vec![0], 2).unwrap(),
        &mut y,
    )
    .unwrap();
    for &(target, start) in &columns {
        let out = target.dims(config).1;
        let changed = y[start..start + out].iter().any(|&v| v != 0.0);
        assert_eq!(changed, target != LoraTarget::K, "{target}");
    }
    let mut y = vec![0.0; outf];
    lora.add_delta(
        0,
        LoraGroup::Qkv,
        &x[..inf],
        &LoraRows::new(vec![1], 2).unwrap(),
        &mut y,
    )
    .unwrap();
    let (k, start) = columns[1];
    assert!(y[start..start + k.dims(config).1].iter().any(|&v| v != 0.0));
}

#[test]
fn stacked_layout_pads_ranks_and_folds_scaling() {
    let files = tiny_files(2, true, 1);
    let config = &files.config;
    let a = make_adapter(config, 2, 4.0, false, &[LoraTarget::Q, LoraTarget::V], 1);
    let b = make_adapter(config, 6, 8.0, true, &LoraTarget::ALL, 2);
    let stacked =
        StackedAdapters::new(&[("a".into(), a.clone()), ("b".into(), b.clone())], config).unwrap();
    assert_eq!(stacked.scalings(), &[2.0, 8.0 / 6f32.sqrt()]);
    let q = stacked.module(1, LoraTarget::Q).unwrap();
    let (inf, outf) = (q.in_features, q.out_features);
    assert_eq!((q.rank, q.ranks), (6, &[2usize, 6][..]));
    assert_eq!(q.a.len(), 2 * 6 * inf);
    assert_eq!(q.b.len(), 2 * outf * 6);
    let pa = &a.modules[&(1, LoraTarget::Q)];
    // A of adapter 0: rows 0..2 copied, rows 2..6 zero.
    assert_eq!(&q.a[..2 * inf], &pa.a.data[..]);
    assert!(q.a[2 * inf..6 * inf].iter().all(|&v| v == 0.0));
    // B of adapter 0: [outf, 6] with columns 0..2 = 2.0 * B, the rest zero.
    for o in 0..outf {
        for k in 0..6 {
            let want = if k < 2 {
                2.0 * pa.b.data[o * 2 + k]
            } else {
                0.0
            };
            assert_eq!(q.b[o * 6 + k], want);
        }
    }
    // K is targeted by b only: adapter 0's blocks are zero, rank is b's.
    let k = stacked.module(0, LoraTarget::K).unwrap();
    assert_eq!((k.rank, k.ranks), (6, &[0usize, 6][..]));
    assert!(k.a[..6 * k.in_features].iter().all(|&v| v == 0.0));
    // Only "a": K is not stacked at all.
    let only_a = StackedAdapters::new(&[("a".into(), a.clone())], config).unwrap();
    assert!(only_a.module(0, LoraTarget::K).is_none());
    assert_eq!(only_a.module(0, LoraTarget::V).unwrap().rank, 2);
    // Duplicate names are refused.
    assert!(StackedAdapters::new(&[("a".into(), a.clone()), ("a".into(), a)], config).is_err());
}
