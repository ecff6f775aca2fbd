//! The emulator's crossing counters (`runtime::emu::stats`: copies each way, host waits, launches),
//! which the decode benchmark reports per step. One test in its own binary: the counters are per
//! device and process-wide, so no other test may run beside it.

use ascend_cold::runtime::emu;
use ascend_cold::{contracts::ShrinkShape, ops, Device, DeviceBuffer, Stream};
use half::f16;

#[test]
fn copies_waits_and_launches_are_counted_where_they_happen() {
    let device = Device::emulator().unwrap();
    let stream = Stream::new(&device).unwrap();
    let mut x = DeviceBuffer::<f16>::zeroed(&device, 8).unwrap();
    let a = DeviceBuffer::from_host(&device, &[f16::ONE; 4]).unwrap();
    let mut y = DeviceBuffer::<f32>::zeroed(&device, 2).unwrap();
    let stats = || emu::stats(device.id()).unwrap();

    // A pageable upload is a copy to the device, and the host waits for it.
    let before = stats();
    stream.upload(x.view_mut(), vec![f16::ONE; 8]).unwrap();
    let after = stats();
    assert_eq!(after.copies_to_device - before.copies_to_device, 1);
    assert_eq!(after.host_waits - before.host_waits, 1);
    assert_eq!(after.copies_to_host, before.copies_to_host);

    // A launch counts once, whatever its blocks; it makes the host wait for nothing.
    let before = stats();
    let op = ops::BgmvShrink {
        x: x.view(),
        weights: a.view(),
        indices: ops::AdapterIndices::Host(&[0, 0]),
        y: y.view_mut(),
        shape: ShrinkShape {
            batch: 2,
            hidden_in: 4,
            rank: 1,
            num_loras: 1,
        },
        scale: 1.0,
    };
    ops::bgmv_shrink(&stream, op, None).unwrap();
    stream.synchronize().unwrap();
    let after = stats();
    assert_eq!(after.launches - before.launches, 1);
    // The tiling and the indices go up on first use (two copies), then the explicit synchronisation.
    assert_eq!(after.copies_to_device - before.copies_to_device, 2);
    assert_eq!(after.host_waits - before.host_waits, 2 + 1);

    // A download that is waited for: one copy to the host, one wait (the download's own copy is
    // pageable, and the future's wait synchronises).
    let before = stats();
    let got = stream.download(y.view()).unwrap().wait().unwrap();
    assert_eq!(got, [4.0, 4.0]);
    let after = stats();
    assert_eq!(after.copies_to_host - before.copies_to_host, 1);
    assert!(after.host_waits - before.host_waits >= 1);
    assert_eq!(after.launches, before.launches);
}
