//! Function handles are looked up once per loaded module and kernel name: any number of launches
//! leaves the runtime's handle count where the first one put it (docs/ARCHITECTURE.md, launch).

mod common;

use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::runtime::emu;
use ascend_cold::shapes::{ColdShape, ShrinkShape};
use ascend_cold::{DeviceBuffer, Stream};
use half::f16;

#[test]
fn ten_thousand_ops_leave_the_handle_count_unchanged() {
    let device = common::emu(0);
    let stream = Stream::new(&device).unwrap();
    let shape = ColdShape { rows: 2, vocab: 70 };
    let logits: Vec<f32> = (0..shape.rows * shape.vocab)
        .map(|i| (i % 13) as f32)
        .collect();
    let e = DeviceBuffer::from_host(&device, &logits).unwrap();
    let a = DeviceBuffer::from_host(&device, &logits).unwrap();
    let mut tokens = DeviceBuffer::<i64>::zeroed(&device, shape.rows).unwrap();
    let mut best = DeviceBuffer::<f32>::zeroed(&device, shape.rows).unwrap();
    let shrink = ShrinkShape {
        batch: 2,
        hidden_in: 32,
        rank: 4,
        num_loras: 1,
    };
    let x = DeviceBuffer::from_host(&device, &[f16::ONE; 2 * 32]).unwrap();
    let w = DeviceBuffer::from_host(&device, &[f16::ONE; 4 * 32]).unwrap();
    let mut y = DeviceBuffer::<f32>::zeroed(&device, 2 * 4).unwrap();

    let mut one_round = |stream: &Stream| {
        let out = ColdOutputs {
            tokens: tokens.view_mut(),
            best_scores: best.view_mut(),
            scores: None,
        };
        ops::cold_score(stream, e.view(), a.view(), shape, 0.1, 0.5, out, None).unwrap();
        let idx = AdapterIndices::Host(&[0, -1]);
        ops::bgmv_shrink(
            stream,
            x.view(),
            w.view(),
            idx,
            y.view_mut(),
            shrink,
            0.5,
            None,
        )
        .unwrap();
    };
    // The first round loads the module and looks both kernels up.
    one_round(&stream);
    stream.synchronize().unwrap();
    let before = emu::stats(0).unwrap();
    assert!(before.live_function_handles >= 2, "{before:?}");
    for _ in 0..5_000 {
        one_round(&stream);
    }
    stream.synchronize().unwrap();
    let after = emu::stats(0).unwrap();
    assert_eq!(
        after.launches - before.launches,
        10_000,
        "every op launched once"
    );
    assert_eq!(
        after.live_function_handles, before.live_function_handles,
        "{after:?}"
    );
    assert_eq!(after.live_binaries, before.live_binaries, "{after:?}");
    let expected: Vec<i64> =
        ascend_cold::reference::cold_score(&logits, &logits, shape, 0.1, 0.5, None)
            .unwrap()
            .iter()
            .map(|p| p.token)
            .collect();
    assert_eq!(tokens.to_vec().unwrap(), expected, "the ops computed");
}
