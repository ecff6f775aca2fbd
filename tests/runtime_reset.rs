//! Use after a device reset is an error, never a use of freed resources. Its own test binary (process):
//! a reset releases the device for everyone in the process.

mod common;

use ascend_cold::runtime::emu;
use ascend_cold::{Device, DeviceBuffer, Error, Event, Module, Stream};

fn use_after_reset(device: &Device) {
    let stream = Stream::new(device).unwrap();
    let event = Event::new(device).unwrap();
    let mut buf = DeviceBuffer::from_host(device, &[1.0f32, 2.0]).unwrap();
    stream.upload(buf.view_mut(), vec![3.0f32, 4.0]).unwrap();
    let module = Module::load(device).ok();
    device.reset().unwrap();

    let reset = |r: ascend_cold::Result<()>| matches!(r, Err(Error::DeviceReset { .. }));
    assert!(reset(buf.to_vec().map(drop)));
    assert!(reset(buf.copy_from_host(&[0.0, 0.0])));
    assert!(reset(stream.synchronize()));
    assert!(reset(event.record(&stream)));
    assert!(reset(event.synchronize()));
    if let Some(m) = &module {
        assert!(matches!(
            m.kernel("emu_selftest_add_f32"),
            Err(Error::DeviceReset { .. })
        ));
    }
    // Dropping the stale handles releases nothing twice and reports nothing.
    drop((buf, stream, event, module));
    assert!(ascend_cold::runtime::take_drop_errors().is_empty());
    // The device is usable again with new handles.
    let fresh = DeviceBuffer::from_host(device, &[5i32, 6]).unwrap();
    assert_eq!(fresh.to_vec().unwrap(), [5, 6]);
}

#[test]
fn use_after_reset_is_an_error() {
    let device = common::emu(3);
    use_after_reset(&device);
    let stats = emu::stats(3).unwrap();
    assert_eq!(stats.freed_by_reset, 1, "{stats:?}");
    assert_eq!(
        (
            stats.live_allocations,
            stats.total_allocs,
            stats.total_frees
        ),
        (0, 2, 1),
        "{stats:?}"
    );
    if let Some(npu) = common::npu() {
        use_after_reset(&npu);
    }
}
