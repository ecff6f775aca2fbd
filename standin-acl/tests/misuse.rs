//! Violations of AscendCL's preconditions through the C ABI: each is answered with a non-zero AscendCL
//! code and an `aclGetRecentErrMsg` message, never a crash, and leaves the runtime usable (the test ends
//! with a correct round trip on the same device).
//!
//! Only the pointers the stand-in promises to check are ever wrong here: handles, device pointers, and
//! null out-parameters. A host buffer given for a copy is always valid for its length, as C requires.

mod common;

use ascend_sys::*;
use common::*;
use std::process::Command;
use std::ptr;

/// Runs `body` in a child process (this test binary, filtered to the test `name`), so that a crash
/// fails this one test with its signal instead of taking every test of the binary down with it.
fn in_child(name: &str, body: impl FnOnce()) {
    const CHILD: &str = "STANDIN_ACL_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let output = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test executable as a child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} in a child process: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

/// A correct H2D + D2H round trip on the current device: the runtime still works.
fn still_works() {
    let p = malloc(64);
    let data: Vec<u8> = (0..64).collect();
    h2d(p, &data);
    let mut back = vec![0u8; 64];
    d2h(&mut back, p);
    assert_eq!(back, data);
    free(p);
}

#[test]
fn handles_of_device_0_used_on_device_1() {
    set_device(0);
    let stream0 = create_stream();
    let event0 = create_event();
    let dev0 = malloc(64);
    set_device(1);
    let stream1 = create_stream();
    let event1 = create_event();
    let dev1 = malloc(64);

    // SAFETY: live handles of different devices: checked by the stand-in.
    let code = unsafe { (f().aclrtRecordEvent)(event0, stream1) };
    refused(
        code,
        "aclrtRecordEvent of a device 0 event on a device 1 stream",
    );
    // SAFETY: as above.
    let code = unsafe { (f().aclrtRecordEvent)(event1, stream0) };
    refused(
        code,
        "aclrtRecordEvent of a device 1 event on a device 0 stream",
    );

    let host = [7u8; 64];
    // SAFETY: `host` readable for 64 bytes; `dev1` is device 1 memory, the stream is device 0's.
    let code = unsafe {
        (f().aclrtMemcpyAsync)(
            dev1,
            64,
            host.as_ptr().cast(),
            64,
            ACL_MEMCPY_HOST_TO_DEVICE,
            stream0,
        )
    };
    refused(
        code,
        "aclrtMemcpyAsync into device 1 memory on a device 0 stream",
    );
    // SAFETY: `dev0` is device 0 memory, the stream device 1's.
    let code = unsafe {
        (f().aclrtMemcpyAsync)(
            dev0,
            64,
            host.as_ptr().cast(),
            64,
            ACL_MEMCPY_HOST_TO_DEVICE,
            stream1,
        )
    };
    refused(
        code,
        "aclrtMemcpyAsync into device 0 memory on a device 1 stream",
    );

    sync(stream1);
    still_works();
    destroy_stream(stream1);
    // SAFETY: live handle.
    check(
        unsafe { (f().aclrtDestroyEvent)(event1) },
        "aclrtDestroyEvent",
    );
    free(dev1);
    set_device(0);
    sync(stream0);
    still_works();
    destroy_stream(stream0);
    // SAFETY: live handle.
    check(
        unsafe { (f().aclrtDestroyEvent)(event0) },
        "aclrtDestroyEvent",
    );
    free(dev0);
}

#[test]
fn freed_and_foreign_pointers() {
    set_device(0);
    let p = malloc(256);
    free(p);
    let host = [1u8; 256];
    let mut back = [0u8; 256];

    // SAFETY: a freed device pointer: checked by the stand-in, not dereferenced.
    refused(unsafe { (f().aclrtFree)(p) }, "aclrtFree twice");
    // SAFETY: freed device pointer as the device side, valid host side.
    let code =
        unsafe { (f().aclrtMemcpy)(p, 256, host.as_ptr().cast(), 256, ACL_MEMCPY_HOST_TO_DEVICE) };
    refused(code, "aclrtMemcpy H2D into freed device memory");
    // SAFETY: as above.
    let code = unsafe {
        (f().aclrtMemcpy)(
            back.as_mut_ptr().cast(),
            256,
            p,
            256,
            ACL_MEMCPY_DEVICE_TO_HOST,
        )
    };
    refused(code, "aclrtMemcpy D2H from freed device memory");
    // SAFETY: as above.
    refused(
        unsafe { (f().aclrtMemset)(p, 256, 0, 256) },
        "aclrtMemset of freed device memory",
    );

    // Host memory that was never the runtime's.
    let mut vec = vec![0u8; 256];
    // SAFETY: a live host pointer the runtime did not allocate: refused, not freed.
    refused(
        unsafe { (f().aclrtFree)(vec.as_mut_ptr().cast()) },
        "aclrtFree of a malloc'd host pointer",
    );
    // SAFETY: as above.
    refused(
        unsafe { (f().aclrtFreeHost)(vec.as_mut_ptr().cast()) },
        "aclrtFreeHost of a malloc'd host pointer",
    );
    // SAFETY: as above.
    refused(
        unsafe { (f().aclrtMemset)(vec.as_mut_ptr().cast(), 256, 0, 256) },
        "aclrtMemset of host memory",
    );
    // The two allocators are not interchangeable.
    let pinned = malloc_host(64);
    // SAFETY: a live aclrtMallocHost pointer given to aclrtFree: refused, not freed.
    refused(
        unsafe { (f().aclrtFree)(pinned.cast()) },
        "aclrtFree of aclrtMallocHost memory",
    );
    let dev = malloc(64);
    // SAFETY: a live aclrtMalloc pointer given to aclrtFreeHost: refused, not freed.
    refused(
        unsafe { (f().aclrtFreeHost)(dev) },
        "aclrtFreeHost of aclrtMalloc memory",
    );
    free(dev);
    free_host(pinned);
    // SAFETY: freed pinned pointer: checked against the stand-in's table.
    refused(
        unsafe { (f().aclrtFreeHost)(pinned.cast()) },
        "aclrtFreeHost twice",
    );
    still_works();
}

#[test]
fn freed_device_memory_is_not_taken_for_host_memory() {
    in_child("freed_device_memory_is_not_taken_for_host_memory", || {
        set_device(0);
        // Large enough that the host allocator behind an emulator returns it to the system on free:
        // a copy that still reads or writes it then faults.
        let n = 8 << 20;
        let p = malloc(n);
        free(p);
        let mut buffer = vec![0u8; n];
        // SAFETY: `buffer` is valid for n bytes; `p` is freed device memory, which the stand-in must
        // recognise as such rather than copy from as if it were host memory.
        let code = unsafe {
            (f().aclrtMemcpy)(buffer.as_mut_ptr().cast(), n, p, n, ACL_MEMCPY_HOST_TO_HOST)
        };
        refused(code, "aclrtMemcpy HOST_TO_HOST from freed device memory");
        // SAFETY: as above, the other way.
        let code =
            unsafe { (f().aclrtMemcpy)(p, n, buffer.as_ptr().cast(), n, ACL_MEMCPY_HOST_TO_HOST) };
        refused(code, "aclrtMemcpy HOST_TO_HOST into freed device memory");
    });
}

#[test]
fn a_kernel_reading_freed_memory_faults_the_stream_not_the_process() {
    set_device(0);
    let stream = create_stream();
    let add = selftest_kernel();
    let buffers = AddBuffers::new(1000);
    let mut args = buffers.args();
    let x_freed = malloc(4000);
    args[0] = x_freed as u64;
    free(x_freed);
    // SAFETY: a valid host block of four addresses, one of them freed device memory: the kernel's GM
    // accesses are checked by the emulator.
    let launch = unsafe {
        (f().aclrtLaunchKernelWithHostArgs)(
            add,
            4,
            stream,
            ptr::null_mut(),
            args.as_mut_ptr().cast(),
            32,
            ptr::null_mut(),
            0,
        )
    };
    // SAFETY: a live stream.
    let synced = unsafe { (f().aclrtSynchronizeStream)(stream) };
    if launch == ACL_SUCCESS {
        refused(
            synced,
            "aclrtSynchronizeStream after a kernel read freed memory",
        );
    } else {
        refused(launch, "a launch whose arguments include freed memory");
    }
    buffers.assert_untouched("after the faulting kernel");
    buffers.free();
    // SAFETY: a live stream (possibly carrying the fault).
    let _ = unsafe { (f().aclrtDestroyStreamForce)(stream) };
    still_works();
}

#[test]
fn copies_larger_than_dest_max() {
    set_device(0);
    let stream = create_stream();
    let dev = malloc(16);
    let host = [3u8; 64];
    let mut back = [0u8; 64];

    // SAFETY: `host` readable for 32 bytes; count 32 > destMax 16 is the misuse.
    let code =
        unsafe { (f().aclrtMemcpy)(dev, 16, host.as_ptr().cast(), 32, ACL_MEMCPY_HOST_TO_DEVICE) };
    let message = refused(code, "aclrtMemcpy with count > destMax");
    assert!(
        message.contains("destMax"),
        "the message must name destMax: {message}"
    );
    // SAFETY: as above, on a stream.
    let code = unsafe {
        (f().aclrtMemcpyAsync)(
            dev,
            16,
            host.as_ptr().cast(),
            32,
            ACL_MEMCPY_HOST_TO_DEVICE,
            stream,
        )
    };
    refused(code, "aclrtMemcpyAsync with count > destMax");
    // SAFETY: `back` writable for 64 bytes; destMax 64 is honest for the host side, but 64 bytes of a
    // 16-byte device allocation is the misuse.
    let code = unsafe {
        (f().aclrtMemcpy)(
            back.as_mut_ptr().cast(),
            64,
            dev,
            64,
            ACL_MEMCPY_DEVICE_TO_HOST,
        )
    };
    refused(
        code,
        "aclrtMemcpy D2H of 64 bytes from a 16-byte allocation",
    );
    // SAFETY: a destMax larger than the allocation (a lying caller): the allocation bounds still hold.
    let code =
        unsafe { (f().aclrtMemcpy)(dev, 64, host.as_ptr().cast(), 64, ACL_MEMCPY_HOST_TO_DEVICE) };
    refused(
        code,
        "aclrtMemcpy H2D of 64 bytes into a 16-byte allocation",
    );
    // SAFETY: count 32 > maxCount 16.
    refused(
        unsafe { (f().aclrtMemset)(dev, 16, 0, 32) },
        "aclrtMemset with count > maxCount",
    );
    sync(stream);
    destroy_stream(stream);
    free(dev);
    still_works();
}

#[test]
fn null_pointers() {
    set_device(0);
    let stream = create_stream();
    let event = create_event();
    let dev = malloc(64);
    let host = [0u8; 64];
    let mut back = [0u8; 64];
    let f = f();

    // SAFETY: every call below passes one null, the misuse under test, which the stand-in checks
    // before any read or write; every other argument is valid.
    unsafe {
        refused(
            (f.aclrtGetDeviceCount)(ptr::null_mut()),
            "aclrtGetDeviceCount(NULL)",
        );
        refused((f.aclrtGetDevice)(ptr::null_mut()), "aclrtGetDevice(NULL)");
        refused(
            (f.aclrtMalloc)(ptr::null_mut(), 64, ACL_MEM_MALLOC_HUGE_FIRST),
            "aclrtMalloc(NULL, ...)",
        );
        refused(
            (f.aclrtMallocHost)(ptr::null_mut(), 64),
            "aclrtMallocHost(NULL, ...)",
        );
        refused((f.aclrtFree)(ptr::null_mut()), "aclrtFree(NULL)");
        refused((f.aclrtFreeHost)(ptr::null_mut()), "aclrtFreeHost(NULL)");
        refused(
            (f.aclrtMemset)(ptr::null_mut(), 64, 0, 64),
            "aclrtMemset(NULL, ...)",
        );
        refused(
            (f.aclrtMemcpy)(
                ptr::null_mut(),
                64,
                host.as_ptr().cast(),
                64,
                ACL_MEMCPY_HOST_TO_DEVICE,
            ),
            "aclrtMemcpy with a null dst",
        );
        refused(
            (f.aclrtMemcpy)(
                back.as_mut_ptr().cast(),
                64,
                ptr::null(),
                64,
                ACL_MEMCPY_DEVICE_TO_HOST,
            ),
            "aclrtMemcpy with a null src",
        );
        refused(
            (f.aclrtMemcpyAsync)(dev, 64, ptr::null(), 64, ACL_MEMCPY_HOST_TO_DEVICE, stream),
            "aclrtMemcpyAsync with a null src",
        );
        refused(
            (f.aclrtCreateStream)(ptr::null_mut()),
            "aclrtCreateStream(NULL)",
        );
        refused(
            (f.aclrtCreateEvent)(ptr::null_mut()),
            "aclrtCreateEvent(NULL)",
        );
        refused(
            (f.aclrtStreamQuery)(stream, ptr::null_mut()),
            "aclrtStreamQuery with a null status",
        );
        refused(
            (f.aclrtQueryEventStatus)(event, ptr::null_mut()),
            "aclrtQueryEventStatus with a null status",
        );
        refused(
            (f.aclrtEventElapsedTime)(ptr::null_mut(), event, event),
            "aclrtEventElapsedTime with a null ms",
        );
        refused(
            (f.aclrtRecordEvent)(ptr::null_mut(), stream),
            "aclrtRecordEvent(NULL, ...)",
        );
        refused(
            (f.aclrtSynchronizeEvent)(ptr::null_mut()),
            "aclrtSynchronizeEvent(NULL)",
        );
        refused(
            (f.aclrtDestroyEvent)(ptr::null_mut()),
            "aclrtDestroyEvent(NULL)",
        );
        refused(
            (f.aclrtGetDeviceInfo)(0, ACL_DEV_ATTR_VECTOR_CORE_NUM, ptr::null_mut()),
            "aclrtGetDeviceInfo with a null value",
        );
        refused(
            (f.aclrtBinaryLoadFromData)(ptr::null(), 16, ptr::null(), &mut ptr::null_mut()),
            "aclrtBinaryLoadFromData with null data",
        );
        let mut magic = LoadMagic::vector_core();
        let options = magic.options();
        refused(
            (f.aclrtBinaryLoadFromData)(
                SELFTEST_BINARY.as_ptr().cast(),
                SELFTEST_BINARY.len(),
                &options,
                ptr::null_mut(),
            ),
            "aclrtBinaryLoadFromData with a null binHandle",
        );
        let (code, binary) = load_binary(SELFTEST_BINARY, Some(&options));
        check(code, "aclrtBinaryLoadFromData");
        refused(
            (f.aclrtBinaryGetFunction)(binary, ptr::null(), &mut ptr::null_mut()),
            "aclrtBinaryGetFunction with a null name",
        );
        refused(
            (f.aclrtBinaryGetFunction)(binary, SELFTEST_KERNEL.as_ptr(), ptr::null_mut()),
            "aclrtBinaryGetFunction with a null funcHandle",
        );
        refused(
            (f.aclrtLaunchKernel)(ptr::null_mut(), 1, dev, 32, stream),
            "aclrtLaunchKernel with a null funcHandle",
        );
        let add = selftest_kernel();
        refused(
            (f.aclrtLaunchKernel)(add, 1, ptr::null(), 32, stream),
            "aclrtLaunchKernel with a null argsData",
        );
        refused(
            (f.aclrtLaunchKernelWithHostArgs)(
                add,
                1,
                stream,
                ptr::null_mut(),
                ptr::null_mut(),
                32,
                ptr::null_mut(),
                0,
            ),
            "aclrtLaunchKernelWithHostArgs with null hostArgs",
        );
        check((f.aclrtBinaryUnLoad)(binary), "aclrtBinaryUnLoad");
    }
    sync(stream);
    destroy_stream(stream);
    // SAFETY: live handle.
    check(unsafe { (f.aclrtDestroyEvent)(event) }, "aclrtDestroyEvent");
    free(dev);
    still_works();
}

#[test]
fn a_stream_used_after_destroy() {
    set_device(0);
    let stream = create_stream();
    let event = create_event();
    let dev = malloc(64);
    let host = [5u8; 64];
    destroy_stream(stream);
    let f = f();
    let mut status = ACL_STREAM_STATUS_RESERVED;

    // SAFETY: in every call below `stream` is a destroyed handle, which the stand-in must recognise
    // without touching what it pointed to; every other argument is valid.
    unsafe {
        refused((f.aclrtSynchronizeStream)(stream), "aclrtSynchronizeStream");
        refused(
            (f.aclrtSynchronizeStreamWithTimeout)(stream, 1000),
            "aclrtSynchronizeStreamWithTimeout",
        );
        refused(
            (f.aclrtStreamQuery)(stream, &mut status),
            "aclrtStreamQuery",
        );
        refused(
            (f.aclrtMemcpyAsync)(
                dev,
                64,
                host.as_ptr().cast(),
                64,
                ACL_MEMCPY_HOST_TO_DEVICE,
                stream,
            ),
            "aclrtMemcpyAsync",
        );
        refused((f.aclrtRecordEvent)(event, stream), "aclrtRecordEvent");
        refused(
            (f.aclrtStreamWaitEvent)(stream, event),
            "aclrtStreamWaitEvent",
        );
        let add = selftest_kernel();
        let buffers = AddBuffers::new(8);
        let mut args = buffers.args();
        refused(
            (f.aclrtLaunchKernelWithHostArgs)(
                add,
                1,
                stream,
                ptr::null_mut(),
                args.as_mut_ptr().cast(),
                32,
                ptr::null_mut(),
                0,
            ),
            "aclrtLaunchKernelWithHostArgs",
        );
        buffers.assert_untouched("after a launch on a destroyed stream");
        buffers.free();
        refused((f.aclrtDestroyStream)(stream), "aclrtDestroyStream twice");
        refused(
            (f.aclrtDestroyStreamForce)(stream),
            "aclrtDestroyStreamForce of a destroyed stream",
        );

        // Events likewise.
        check((f.aclrtDestroyEvent)(event), "aclrtDestroyEvent");
        refused(
            (f.aclrtSynchronizeEvent)(event),
            "aclrtSynchronizeEvent of a destroyed event",
        );
        refused((f.aclrtDestroyEvent)(event), "aclrtDestroyEvent twice");
    }
    free(dev);
    still_works();
}
