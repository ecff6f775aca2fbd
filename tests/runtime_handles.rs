//! Launches in steady state: function handles are looked up once per loaded module and kernel name,
//! and nothing grows per launch (docs/ARCHITECTURE.md, launch). One test per process, because the
//! resident set is measured for the whole process.

mod common;

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::{ColdShape, ShrinkShape};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::runtime::emu;
use ascend_cold::{DeviceBuffer, Stream};
use half::f16;

/// Resident set size of this process in bytes (Linux `/proc/self/statm`, second field, in pages).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc_page_size() }
}

extern "C" {
    fn getpagesize() -> i32;
}

/// # Safety
/// None beyond calling libc.
unsafe fn libc_page_size() -> u64 {
    // SAFETY: getpagesize has no preconditions.
    unsafe { getpagesize() as u64 }
}

#[test]
fn a_hundred_thousand_launches_keep_handles_and_memory_flat() {
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

    // One round is two launches: cold_score (one chunk per row at this vocabulary) and bgmv_shrink.
    let mut rounds = |stream: &Stream, n: usize| {
        for i in 0..n {
            let out = ColdOutputs {
                tokens: tokens.view_mut(),
                best_scores: best.view_mut(),
                scores: None,
            };
            ops::cold_score(
                stream,
                e.view(),
                a.view(),
                shape,
                ColdParams::new(0.1, 0.5).unwrap(),
                out,
                None,
            )
            .unwrap();
            let idx = AdapterIndices::Host(&[0, -1]);
            ops::bgmv_shrink(
                stream,
                ops::BgmvShrink {
                    x: x.view(),
                    weights: w.view(),
                    indices: idx,
                    y: y.view_mut(),
                    shape: shrink,
                    scale: 0.5,
                },
                None,
            )
            .unwrap();
            if i % 1000 == 999 {
                stream.synchronize().unwrap();
            }
        }
        stream.synchronize().unwrap();
    };
    // Warm-up: loads the module, looks both kernels up, fills the stream's scratch and the
    // allocator's free lists.
    rounds(&stream, 2_000);
    let before = emu::stats(0).unwrap();
    let rss_before = resident_bytes();
    assert!(before.live_function_handles >= 2, "{before:?}");

    rounds(&stream, 50_000);
    let after = emu::stats(0).unwrap();
    let rss_after = resident_bytes();
    assert_eq!(
        after.launches - before.launches,
        100_000,
        "every op launched once"
    );
    assert_eq!(
        after.live_function_handles, before.live_function_handles,
        "{after:?}"
    );
    assert_eq!(after.live_binaries, before.live_binaries, "{after:?}");
    assert_eq!(after.live_allocations, before.live_allocations, "{after:?}");
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 1 << 20,
        "resident set grew {growth} bytes over 100,000 launches"
    );
    eprintln!(
        "100,000 launches: resident {rss_before} -> {rss_after} bytes, handles {}",
        after.live_function_handles
    );

    let expected: Vec<i64> = ascend_cold::reference::cold_score(
        &logits,
        &logits,
        shape,
        ColdParams::new(0.1, 0.5).unwrap(),
        None,
    )
    .unwrap()
    .iter()
    .map(|p| p.token)
    .collect();
    assert_eq!(tokens.to_vec().unwrap(), expected, "the ops computed");
}
