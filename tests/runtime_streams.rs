//! Ordering on streams: async copy + kernel + copy back, two streams joined by an event, event timing,
//! and buffers/streams dropped while work is queued.

mod common;

use ascend_cold::runtime::emu;
use ascend_cold::{Device, DeviceBuffer, Event, Module, Stream};

fn inputs(n: usize) -> (Vec<f32>, Vec<f32>) {
    (
        (0..n).map(|i| i as f32).collect(),
        (0..n).map(|i| 0.25 * i as f32 - 3.0).collect(),
    )
}

/// Queues z = x + y (emu_selftest_add_f32) on `stream`. Emulator only: the kernel is host-compiled.
fn queue_add(
    device: &Device,
    stream: &Stream,
    x: Vec<f32>,
    y: Vec<f32>,
) -> (DeviceBuffer<f32>, [DeviceBuffer<f32>; 2], DeviceBuffer<i64>) {
    let n = x.len();
    let add = Module::load(device)
        .unwrap()
        .kernel("emu_selftest_add_f32")
        .unwrap();
    let mut xd = DeviceBuffer::<f32>::zeroed(device, n).unwrap();
    let mut yd = DeviceBuffer::<f32>::zeroed(device, n).unwrap();
    let mut nd = DeviceBuffer::<i64>::zeroed(device, 1).unwrap();
    let mut z = DeviceBuffer::<f32>::zeroed(device, n).unwrap();
    z.copy_from_host(&vec![f32::NAN; n]).unwrap(); // poison the output
    stream.upload(xd.view_mut(), x).unwrap();
    stream.upload(yd.view_mut(), y).unwrap();
    stream.upload(nd.view_mut(), vec![n as i64]).unwrap();
    // SAFETY: the kernel reads nd[0] = n elements of xd and yd and writes n of z; all hold n.
    unsafe { add.launch(stream, 8, &[&xd, &yd, &z.view_mut(), &nd]) }.unwrap();
    (z, [xd, yd], nd)
}

#[test]
fn async_copy_kernel_copy_back_on_one_stream() {
    let device = common::emu(0);
    let stream = Stream::new(&device).unwrap();
    let n = 100_003;
    let (x, y) = inputs(n);
    let (z, _inputs, _n) = queue_add(&device, &stream, x.clone(), y.clone());
    let got = stream.download(z.view()).unwrap().wait().unwrap();
    for i in 0..n {
        assert_eq!(got[i], x[i] + y[i], "element {i}");
    }
    let launches = emu::last_launches(0).unwrap();
    let record = launches
        .iter()
        .rev()
        .find(|l| l.kernel == "emu_selftest_add_f32")
        .expect("launch recorded");
    assert_eq!(record.blocks, 8);
    assert_eq!(record.counters.len(), 8);
    assert!(record.counters.iter().all(|c| c.gm_write_bytes > 0));
}

#[test]
fn two_streams_ordered_by_an_event() {
    for device in common::devices() {
        let (producer, consumer) = (Stream::new(&device).unwrap(), Stream::new(&device).unwrap());
        let n = 1 << 20;
        let (x, y) = inputs(n);
        let expected: Vec<f32>;
        let src = if common::is_emu(&device) {
            expected = x.iter().zip(&y).map(|(a, b)| a + b).collect();
            queue_add(&device, &producer, x, y).0
        } else {
            expected = x.clone();
            let mut b = DeviceBuffer::<f32>::zeroed(&device, n).unwrap();
            producer.upload(b.view_mut(), x).unwrap();
            b
        };
        let ready = Event::new(&device).unwrap();
        ready.record(&producer).unwrap();
        consumer.wait_event(&ready).unwrap();
        let mut copy = DeviceBuffer::<f32>::zeroed(&device, n).unwrap();
        consumer.copy(copy.view_mut(), src.view()).unwrap();
        let got = consumer.download(copy.view()).unwrap().wait().unwrap();
        assert!(
            got == expected,
            "the consumer ran before the producer's event"
        );
    }
}

#[test]
fn elapsed_time_between_events() {
    for device in common::devices() {
        let stream = Stream::new(&device).unwrap();
        let (start, end) = (Event::new(&device).unwrap(), Event::new(&device).unwrap());
        assert!(
            start.elapsed_ms(&end).is_err(),
            "never-recorded events have no elapsed time"
        );
        start.record(&stream).unwrap();
        let mut buf = DeviceBuffer::<u8>::zeroed(&device, 8 << 20).unwrap();
        stream.upload(buf.view_mut(), vec![1u8; 8 << 20]).unwrap();
        end.record(&stream).unwrap();
        end.synchronize().unwrap();
        let ms = start.elapsed_ms(&end).unwrap();
        assert!((0.0..60_000.0).contains(&ms), "{ms}");
        assert!(end.elapsed_ms(&start).is_err() || end.elapsed_ms(&start).unwrap() <= 0.0);
    }
}

#[test]
fn dropping_buffers_and_streams_with_queued_work_frees_once_and_loses_nothing() {
    let device = common::emu(2); // this test alone uses emulated device 2, so the counts are its own
    let before = emu::stats(2).unwrap();
    let n = 1 << 20;
    let (x, y) = inputs(n);
    let future = {
        let stream = Stream::new(&device).unwrap();
        let (z, inputs, nd) = queue_add(&device, &stream, x.clone(), y.clone());
        let mut out = DeviceBuffer::<f32>::zeroed(&device, n).unwrap();
        stream.copy(out.view_mut(), z.view()).unwrap();
        let future = stream.download(out.view()).unwrap();
        // Everything but the future is dropped while the work may still be queued.
        drop((z, inputs, nd, out, stream));
        future
    };
    let got = future.wait().unwrap();
    assert!(
        got.iter()
            .zip(x.iter().zip(&y))
            .all(|(g, (a, b))| *g == a + b),
        "work was lost"
    );
    let after = emu::stats(2).unwrap();
    assert_eq!(
        after.live_allocations, before.live_allocations,
        "every allocation freed"
    );
    assert_eq!(after.total_allocs - before.total_allocs, 5);
    assert_eq!(
        after.total_frees - before.total_frees,
        5,
        "freed exactly once each"
    );
    assert_eq!(after.launches - before.launches, 1);
    // A zero-length buffer allocates nothing.
    let empty = DeviceBuffer::<f32>::zeroed(&device, 0).unwrap();
    assert!(empty.is_empty() && empty.to_vec().unwrap().is_empty());
    drop(empty);
    assert_eq!(emu::stats(2).unwrap().total_allocs, after.total_allocs);
    assert!(ascend_cold::runtime::take_drop_errors().is_empty());
}

#[test]
fn reading_before_synchronising_sees_stale_data_not_a_crash() {
    // The emulator runs streams asynchronously: raw interop reads that skip ordering see old data,
    // as on a board. Through the safe API the read waits for the stream.
    let device = common::emu(0);
    let stream = Stream::new(&device).unwrap();
    let mut buf = DeviceBuffer::<u32>::zeroed(&device, 1 << 20).unwrap();
    stream.upload(buf.view_mut(), vec![9u32; 1 << 20]).unwrap();
    assert!(buf.to_vec().unwrap().iter().all(|&v| v == 9));
}

#[test]
fn streams_make_progress_when_the_pool_has_no_free_thread() {
    // The emulator runs stream work as jobs on rayon's pool (docs/ARCHITECTURE.md, "Streams"). Here
    // the pool's only thread is the host thread that waits: the waits must run the queued work
    // themselves, across the event too, instead of waiting for jobs that cannot start.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let got = pool.install(|| {
            let device = common::emu(0);
            let (producer, consumer) =
                (Stream::new(&device).unwrap(), Stream::new(&device).unwrap());
            let (x, y) = inputs(4096);
            let expected: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
            let (src, _inputs, _n) = queue_add(&device, &producer, x, y);
            let ready = Event::new(&device).unwrap();
            ready.record(&producer).unwrap();
            consumer.wait_event(&ready).unwrap();
            let mut copy = DeviceBuffer::<f32>::zeroed(&device, 4096).unwrap();
            consumer.copy(copy.view_mut(), src.view()).unwrap();
            let got = consumer.download(copy.view()).unwrap().wait().unwrap();
            ready.synchronize().unwrap();
            (got, expected)
        });
        let _ = done.send(got);
    });
    let (got, expected) = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("stream work stalled: a wait did not run the queued tasks");
    assert!(
        got == expected,
        "the consumer ran before the producer's event"
    );
}
