//! Kernel binaries and the two launch forms through the stand-in's C ABI.
//!
//! hicann/runtime `docs/zh/api_ref/14_Kernel_loading_and_execution.md`: `aclrtLaunchKernel` takes
//! `argsData`, a pointer to DEVICE memory of the launching device holding the kernel's arguments;
//! `aclrtLaunchKernelWithHostArgs` takes them in HOST memory. Passing a host block to the first is the
//! classic porting mistake; on a board it faults the device, the stand-in must refuse it at the call.

mod common;

use ascend_sys::*;
use common::*;
use std::os::raw::c_void;
use std::ptr;

const N: usize = 1000;
const BLOCKS: u32 = 4;

#[test]
fn the_library_is_the_stand_in() {
    assert!(lib().has_symbol("ascend_cold_standin_version"));
    for name in AclFunctions::NAMES {
        assert!(lib().has_symbol(name), "{name} is not exported");
    }
}

#[test]
fn host_args_are_refused_by_launch_kernel_and_accepted_by_launch_kernel_with_host_args() {
    set_device(0);
    let stream = create_stream();
    let add = selftest_kernel();
    let buffers = AddBuffers::new(N);
    let mut args = buffers.args();
    let args_size = 8 * args.len();

    // The block in host memory (a Vec) given as argsData.
    // SAFETY: every pointer is valid for the call (the block readable for argsSize bytes); that it is
    // host memory is the misuse the stand-in must detect without dereferencing it as device memory.
    let code =
        unsafe { (f().aclrtLaunchKernel)(add, BLOCKS, args.as_ptr().cast(), args_size, stream) };
    let message = refused(code, "aclrtLaunchKernel with a host argsData");
    let lower = message.to_lowercase();
    assert!(
        lower.contains("argsdata") && lower.contains("device memory"),
        "the message must say that argsData must be device memory: {message}"
    );
    sync(stream); // a refused launch leaves no error on the stream
    buffers.assert_untouched("after the refused launch");

    // The same bytes as host arguments.
    // SAFETY: `args` is a live host block of argsSize bytes; no cfg, no placeholders.
    let code = unsafe {
        (f().aclrtLaunchKernelWithHostArgs)(
            add,
            BLOCKS,
            stream,
            ptr::null_mut(),
            args.as_mut_ptr().cast(),
            args_size,
            ptr::null_mut(),
            0,
        )
    };
    check(code, "aclrtLaunchKernelWithHostArgs");
    sync(stream);
    buffers.assert_sum("aclrtLaunchKernelWithHostArgs");

    // The same bytes copied into device memory, the form aclrtLaunchKernel documents.
    buffers.poison_z();
    let device_args = malloc(args_size);
    h2d(device_args, &u64_bytes(&args));
    // SAFETY: `device_args` is a device allocation of argsSize bytes on the stream's device.
    let code = unsafe { (f().aclrtLaunchKernel)(add, BLOCKS, device_args, args_size, stream) };
    check(code, "aclrtLaunchKernel with a device argsData");
    sync(stream);
    buffers.assert_sum("aclrtLaunchKernel with device args");

    free(device_args);
    buffers.free();
    destroy_stream(stream);
}

#[test]
fn launch_kernel_refuses_an_args_block_on_another_device() {
    // Docs: the device that runs the launch must be the device of argsData's memory.
    set_device(1);
    let args_elsewhere = malloc(32);
    set_device(0);
    let stream = create_stream();
    let add = selftest_kernel();
    let buffers = AddBuffers::new(N);
    let args = buffers.args();
    set_device(1);
    h2d(args_elsewhere, &u64_bytes(&args));
    set_device(0);
    // SAFETY: `args_elsewhere` is a live device allocation (of device 1): checked, not dereferenced as
    // device 0 memory.
    let code = unsafe { (f().aclrtLaunchKernel)(add, BLOCKS, args_elsewhere, 32, stream) };
    refused(
        code,
        "aclrtLaunchKernel with argsData in device 1 memory on a device 0 stream",
    );
    sync(stream);
    buffers.assert_untouched("after the refused launch");
    buffers.free();
    destroy_stream(stream);
    set_device(1);
    free(args_elsewhere);
}

#[test]
fn launch_kernel_refuses_a_freed_args_block() {
    set_device(0);
    let stream = create_stream();
    let add = selftest_kernel();
    let buffers = AddBuffers::new(N);
    let device_args = malloc(32);
    h2d(device_args, &u64_bytes(&buffers.args()));
    free(device_args);
    // SAFETY: a freed device pointer: the stand-in must see that it is no longer an allocation.
    let code = unsafe { (f().aclrtLaunchKernel)(add, BLOCKS, device_args, 32, stream) };
    refused(code, "aclrtLaunchKernel with a freed argsData");
    sync(stream);
    buffers.assert_untouched("after the refused launch");
    buffers.free();
    destroy_stream(stream);
}

#[test]
fn launch_kernel_refuses_an_args_size_the_kernel_does_not_take() {
    set_device(0);
    let stream = create_stream();
    let add = selftest_kernel();
    let buffers = AddBuffers::new(N);
    let mut args = buffers.args();
    // SAFETY: the host block is readable for 24 of its 32 bytes; the size is the misuse.
    let code = unsafe {
        (f().aclrtLaunchKernelWithHostArgs)(
            add,
            BLOCKS,
            stream,
            ptr::null_mut(),
            args.as_mut_ptr().cast(),
            24,
            ptr::null_mut(),
            0,
        )
    };
    refused(code, "aclrtLaunchKernelWithHostArgs with 3 of 4 arguments");
    sync(stream);
    buffers.assert_untouched("after the refused launch");
    buffers.free();
    destroy_stream(stream);
}

#[test]
fn binary_load_needs_the_vector_core_magic() {
    set_device(0);
    let (code, _) = load_binary(SELFTEST_BINARY, None);
    refused(code, "aclrtBinaryLoadFromData without load options");
    let mut cube = LoadMagic::new(ACL_RT_BINARY_MAGIC_ELF_CUBE_CORE as u32);
    let options = cube.options();
    let (code, _) = load_binary(SELFTEST_BINARY, Some(&options));
    refused(code, "aclrtBinaryLoadFromData with the cube-core magic");
    let mut vector = LoadMagic::vector_core();
    let options = vector.options();
    let (code, handle) = load_binary(SELFTEST_BINARY, Some(&options));
    check(code, "aclrtBinaryLoadFromData with the vector-core magic");
    // SAFETY: a handle just returned by the stand-in.
    check(
        unsafe { (f().aclrtBinaryUnLoad)(handle) },
        "aclrtBinaryUnLoad",
    );
    // SAFETY: the handle is stale: checked by the stand-in.
    let code = unsafe { (f().aclrtBinaryUnLoad)(handle) };
    refused(code, "aclrtBinaryUnLoad twice");
    let mut function = ptr::null_mut();
    // SAFETY: stale handle, valid name and out-parameter.
    let code =
        unsafe { (f().aclrtBinaryGetFunction)(handle, SELFTEST_KERNEL.as_ptr(), &mut function) };
    refused(code, "aclrtBinaryGetFunction on an unloaded binary");
}

#[test]
fn a_function_of_device_0_is_refused_on_a_stream_of_device_1() {
    set_device(0);
    let add = selftest_kernel();
    let buffers = AddBuffers::new(N);
    let mut args = buffers.args();
    set_device(1);
    let stream = create_stream();
    // SAFETY: a valid host block; the function handle belongs to device 0, the stream to device 1.
    let code = unsafe {
        (f().aclrtLaunchKernelWithHostArgs)(
            add,
            BLOCKS,
            stream,
            ptr::null_mut(),
            args.as_mut_ptr().cast::<c_void>(),
            32,
            ptr::null_mut(),
            0,
        )
    };
    refused(code, "a device 0 function launched on a device 1 stream");
    sync(stream);
    destroy_stream(stream);
    set_device(0);
    buffers.assert_untouched("after the refused launch");
    buffers.free();
}
