//! Bad use gives errors, not UB or panics.

mod common;

use ascend_cold::runtime::codes::*;
use ascend_cold::{DeviceBuffer, DeviceView, Error, Event, Module, Stream};

#[test]
fn out_of_bounds_copies_are_errors() {
    for device in common::devices() {
        let buf = DeviceBuffer::<f32>::zeroed(&device, 10).unwrap();
        assert!(matches!(
            buf.copy_to_host(&mut [0.0; 11]),
            Err(Error::BadShape { .. })
        ));
        assert!(matches!(buf.slice(5..11), Err(Error::BadShape { .. })));
        let (start, end) = (7, 3);
        assert!(matches!(buf.slice(start..end), Err(Error::BadShape { .. })));
        if common::is_emu(&device) {
            // A foreign view that claims more than the allocation holds (a broken safety contract):
            // the emulator's bounds check catches it instead of reading past the allocation.
            // SAFETY: deliberately violated, on the emulator only, to show the bounds check.
            let view = unsafe { DeviceView::<f32>::from_raw(&device, buf.device_addr(), 11) };
            let (code, message) = common::acl_code(view.to_vec());
            assert_eq!(code, ACL_ERROR_RT_PARAM_INVALID, "{message}");
            assert!(message.contains("past its end"), "{message}");
        }
    }
}

#[test]
fn copies_between_devices_or_sizes_are_errors() {
    let (d0, d1) = (common::emu(0), common::emu(1));
    let mut a = DeviceBuffer::<i32>::zeroed(&d0, 8).unwrap();
    let b = DeviceBuffer::<i32>::zeroed(&d1, 8).unwrap();
    let c = DeviceBuffer::<i32>::zeroed(&d0, 9).unwrap();
    assert!(matches!(
        a.view_mut().copy_from(b.view()),
        Err(Error::BadParameter { .. })
    ));
    assert!(matches!(
        a.view_mut().copy_from(c.view()),
        Err(Error::BadShape { .. })
    ));
    let s1 = Stream::new(&d1).unwrap();
    assert!(matches!(
        s1.upload(a.view_mut(), vec![0i32; 8]),
        Err(Error::BadParameter { .. })
    ));
    assert!(matches!(
        s1.upload(a.view_mut(), vec![0i32; 7]),
        Err(Error::BadShape { .. })
    ));
    assert!(matches!(
        s1.download(a.view()),
        Err(Error::BadParameter { .. })
    ));
    if let Some(npu) = common::npu() {
        let n = DeviceBuffer::<i32>::zeroed(&npu, 8).unwrap();
        assert!(matches!(
            a.view_mut().copy_from(n.view()),
            Err(Error::BadParameter { .. })
        ));
    }
}

#[test]
fn zero_size_and_huge_allocations() {
    for device in common::devices() {
        // Zero elements: no allocation (aclrtMalloc rejects size 0), an empty buffer.
        let empty = DeviceBuffer::<half::bf16>::zeroed(&device, 0).unwrap();
        assert_eq!(empty.device_addr(), 0);
        // Huge: the device's own out-of-memory error, without touching host memory.
        let huge = DeviceBuffer::<f32>::zeroed(&device, 1 << 40);
        if common::is_emu(&device) {
            let (code, message) = common::acl_code(huge);
            assert_eq!(code, ACL_ERROR_RT_MEMORY_ALLOCATION, "{message}");
        } else {
            assert!(huge.is_err());
        }
        // Beyond the address space: rejected before any call.
        assert!(matches!(
            DeviceBuffer::<i64>::zeroed(&device, usize::MAX / 4),
            Err(Error::BadParameter { .. })
        ));
    }
}

#[test]
fn wrong_argument_block_size_is_rejected_at_launch() {
    let device = common::emu(0);
    if common::npu().is_some() {
        eprintln!("not run on the NPU: whether the board rejects a short argument block is unverified, and a kernel run with one would read garbage addresses");
    }
    let stream = Stream::new(&device).unwrap();
    let add = Module::load(&device)
        .unwrap()
        .kernel("emu_selftest_add_f32")
        .unwrap();
    let x = DeviceBuffer::<f32>::zeroed(&device, 4).unwrap();
    // SAFETY: the launch is rejected before the kernel could run (3 arguments for 4 parameters).
    let (code, message) = common::acl_code(unsafe { add.launch(&stream, 1, &[&x, &x, &x]) });
    assert_eq!(code, ACL_ERROR_INVALID_PARAM);
    assert!(message.contains("must be 32 bytes, got 24"), "{message}");
    // SAFETY: as above: zero blocks is rejected before any call.
    assert!(matches!(
        unsafe { add.launch(&stream, 0, &[&x, &x, &x, &x]) },
        Err(Error::BadParameter { .. })
    ));
    assert!(
        common::acl_code(Module::load(&device).unwrap().kernel("no_such_kernel")).0
            == ACL_ERROR_RT_SYMBOL_NOT_FOUND
    );
    stream.synchronize().unwrap();
}

#[test]
fn a_kernel_fault_is_a_sticky_stream_error_with_the_kernel_message() {
    let device = common::emu(0);
    let stream = Stream::new(&device).unwrap();
    let add = Module::load(&device)
        .unwrap()
        .kernel("emu_selftest_add_f32")
        .unwrap();
    let x = DeviceBuffer::<f32>::zeroed(&device, 16).unwrap();
    let mut z = DeviceBuffer::<f32>::zeroed(&device, 16).unwrap();
    let n = DeviceBuffer::from_host(&device, &[17i64]).unwrap(); // one past the end
                                                                 // SAFETY: deliberately broken contract, on the emulator only: its GM bounds check stops the kernel.
    unsafe { add.launch(&stream, 4, &[&x, &x, &z.view_mut(), &n]) }.unwrap();
    let (code, message) = common::acl_code(stream.synchronize());
    assert_eq!(code, ACL_ERROR_RT_VECTOR_CORE_EXCEPTION);
    assert!(
        message.contains("GM bounds") && message.contains("emu_selftest_add_f32"),
        "{message}"
    );
    // Sticky: later work on the stream is not run, and every synchronisation reports it. An upload from
    // pageable host memory returns only after its copy (hicann/runtime
    // docs/zh/api_ref/11-03_memory_copy_and_set.md, aclrtMemcpyAsync), so it reports the fault too.
    assert!(stream.upload(z.view_mut(), vec![1.0; 16]).is_err());
    assert!(stream.synchronize().is_err());
    // An event recorded behind the fault is skipped with the rest: waiting on it reports the fault
    // instead of waiting for a record that never comes.
    let after = Event::new(&device).unwrap();
    after.record(&stream).unwrap();
    assert!(after.synchronize().is_err());
    // A synchronous read of memory the failed kernel used reports the stream's error once, then reads.
    assert!(x.to_vec().is_err());
    assert_eq!(x.to_vec().unwrap(), [0.0; 16]);
    // Other streams are unaffected.
    let other = Stream::new(&device).unwrap();
    let mut y = DeviceBuffer::<f32>::zeroed(&device, 2).unwrap();
    other.upload(y.view_mut(), vec![1.0, 2.0]).unwrap();
    other.synchronize().unwrap();
}
