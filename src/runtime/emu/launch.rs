//! Kernel binaries and launches.
//!
//! The emulator's binary is a manifest (`ascend-cold-emu-binary 1`, then one entry name per line)
//! naming kernels compiled for the host. Loading it takes the option a vector-core ELF needs on a board
//! (`ACL_RT_BINARY_LOAD_OPT_MAGIC` = `ACL_RT_BINARY_MAGIC_ELF_VECTOR_CORE`, acl_rt.h): a load without it
//! is refused, because on a chip with separate cube and vector cores the runtime would take the kernels
//! for cube kernels (docs/BOARD.md).
//!
//! Both launch forms of hicann/runtime `docs/zh/api_ref/14_Kernel_loading_and_execution.md`:
//! `aclrtLaunchKernel` reads the argument block from *device* memory of the launching device (a host
//! pointer is refused), `aclrtLaunchKernelWithHostArgs` from host memory. The block is the kernel's
//! parameters in declaration order (every parameter here is an 8-byte GM address, so `argsSize` must be
//! 8 × the kernel's parameter count) and is copied at the call. The launch runs when the stream reaches it
//! (stream.rs), holding the allocation table for reading (memory cannot be freed under a running kernel)
//! and the turn to touch device bytes, every block of it, each GM access checked against the live allocations of the stream's device. A violation
//! becomes the stream's sticky error (`ACL_ERROR_RT_VECTOR_CORE_EXCEPTION`) with the kernel's message.
#![allow(non_snake_case)]

use super::*;
use crate::kernels::HostKernel;
use ascend_sys::{
    aclrtBinHandle, aclrtBinaryLoadOptions, aclrtFuncHandle, aclrtLaunchKernelCfg,
    aclrtPlaceHolderInfo, aclrtStream,
};
use std::os::raw::{c_char, c_void};

/// The first line of an emulator binary.
pub(crate) const MAGIC: &str = "ascend-cold-emu-binary 1";

pub(super) struct EmuBinary {
    pub(super) device: u32,
    kernels: Vec<HostKernel>,
}

#[derive(Clone, Copy)]
pub(super) struct EmuFunction {
    pub(super) device: u32,
    binary: usize,
    kernel: HostKernel,
}

/// The kernel-type magic among the load options, if any.
///
/// # Safety
/// `options` is null or points to a valid `aclrtBinaryLoadOptions` whose `options` array has `numOpt`
/// entries (C contract).
unsafe fn load_magic(options: *const aclrtBinaryLoadOptions) -> Result<Option<u32>, aclError> {
    if options.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null and valid (this function's contract).
    let options = unsafe { &*options };
    if options.numOpt == 0 {
        return Ok(None);
    }
    if options.options.is_null() {
        return Err(fail(
            ACL_ERROR_INVALID_PARAM,
            format!(
                "options->numOpt is {} but options->options is null",
                options.numOpt
            ),
        ));
    }
    // SAFETY: `numOpt` entries at `options` (C contract).
    let list = unsafe { std::slice::from_raw_parts(options.options, options.numOpt) };
    let mut magic = None;
    for option in list {
        match option.type_ {
            ascend_sys::ACL_RT_BINARY_LOAD_OPT_MAGIC => {
                // SAFETY: for this option type the union holds `magic` (acl_rt.h).
                magic = Some(unsafe { option.value.magic });
            }
            ascend_sys::ACL_RT_BINARY_LOAD_OPT_LAZY_LOAD
            | ascend_sys::ACL_RT_BINARY_LOAD_OPT_CPU_KERNEL_MODE => {}
            other => {
                return Err(fail(
                    ACL_ERROR_INVALID_PARAM,
                    format!("unknown binary load option type {other}"),
                ))
            }
        }
    }
    Ok(magic)
}

pub(super) unsafe extern "C" fn aclrtBinaryLoadFromData(
    data: *const c_void,
    length: usize,
    options: *const aclrtBinaryLoadOptions,
    bin_handle: *mut aclrtBinHandle,
) -> aclError {
    entry("aclrtBinaryLoadFromData", || {
        if data.is_null() || bin_handle.is_null() || length == 0 {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                "data, length and binHandle must be non-null / non-zero",
            );
        }
        let dev = match current_device() {
            Ok(d) => d,
            Err(code) => return code,
        };
        // SAFETY: the caller provides `length` readable bytes at `data` (C contract).
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), length) };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return fail(
                ACL_ERROR_INVALID_FILE,
                "not an emulator kernel binary (not UTF-8)",
            );
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return fail(
                ACL_ERROR_INVALID_FILE,
                format!("not an emulator kernel binary: the first line must be {MAGIC:?}"),
            );
        }
        let mut kernels = Vec::new();
        for name in lines.map(str::trim).filter(|l| !l.is_empty()) {
            match HostKernel::find(name) {
                Some(k) => kernels.push(k),
                None => {
                    return fail(
                        ACL_ERROR_INVALID_FILE,
                        format!("the binary names kernel {name:?}, which this build did not compile for the host"),
                    )
                }
            }
        }
        // SAFETY: forwarded C contract on `options`.
        let magic = match unsafe { load_magic(options) } {
            Ok(m) => m,
            Err(code) => return code,
        };
        const VECTOR: u32 = ascend_sys::ACL_RT_BINARY_MAGIC_ELF_VECTOR_CORE as u32;
        if magic != Some(VECTOR) {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                format!(
                    "the kernels are vector-core (AIV) kernels: load them with the option ACL_RT_BINARY_LOAD_OPT_MAGIC = \
                     ACL_RT_BINARY_MAGIC_ELF_VECTOR_CORE ({VECTOR:#x}); got {}",
                    match magic {
                        None => "no kernel-type magic (a board would take them for cube kernels)".to_string(),
                        Some(m) => format!("magic {m:#x}"),
                    }
                ),
            );
        }
        let emu = emu();
        let handle = emu.handle();
        lock(&emu.objects).bins.insert(
            handle,
            EmuBinary {
                device: dev,
                kernels,
            },
        );
        // SAFETY: non-null and writable (C contract).
        unsafe { *bin_handle = handle as aclrtBinHandle };
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtBinaryUnLoad(bin_handle: aclrtBinHandle) -> aclError {
    entry("aclrtBinaryUnLoad", || {
        let mut objects = lock(&emu().objects);
        if objects.bins.remove(&(bin_handle as usize)).is_none() {
            return fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("binary {bin_handle:p} is not loaded (unloaded, or its device was reset)"),
            );
        }
        objects.funcs.retain(|_, f| f.binary != bin_handle as usize);
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtBinaryGetFunction(
    bin_handle: aclrtBinHandle,
    kernel_name: *const c_char,
    func_handle: *mut aclrtFuncHandle,
) -> aclError {
    entry("aclrtBinaryGetFunction", || {
        if kernel_name.is_null() || func_handle.is_null() {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                "kernelName and funcHandle must be non-null",
            );
        }
        // SAFETY: a NUL-terminated string (C contract).
        let name = unsafe { std::ffi::CStr::from_ptr(kernel_name) }.to_string_lossy();
        // Before the objects lock: device reset takes the device lock, then the objects lock.
        let current = current_device();
        let emu = emu();
        let mut objects = lock(&emu.objects);
        let Some(bin) = objects.bins.get(&(bin_handle as usize)) else {
            return fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("binary {bin_handle:p} is not loaded (unloaded, or its device was reset)"),
            );
        };
        match current {
            Ok(dev) if dev == bin.device => {}
            Ok(dev) => {
                return fail(
                    ACL_ERROR_RT_STREAM_CONTEXT,
                    format!(
                    "binary {bin_handle:p} was loaded on device {}, the current device is {dev}",
                    bin.device
                ),
                )
            }
            Err(code) => return code,
        }
        let Some(kernel) = bin.kernels.iter().find(|k| k.name() == name).copied() else {
            return fail(
                ACL_ERROR_RT_SYMBOL_NOT_FOUND,
                format!("the binary has no kernel {name:?}"),
            );
        };
        let function = EmuFunction {
            device: bin.device,
            binary: bin_handle as usize,
            kernel,
        };
        let handle = emu.handle();
        objects.funcs.insert(handle, function);
        // SAFETY: non-null and writable (C contract).
        unsafe { *func_handle = handle as aclrtFuncHandle };
        ACL_SUCCESS
    })
}

/// `aclrtLaunchKernel`: the argument block is in device memory of the stream's device.
pub(super) unsafe extern "C" fn aclrtLaunchKernel(
    func_handle: aclrtFuncHandle,
    num_blocks: u32,
    args_data: *const c_void,
    args_size: usize,
    stream: aclrtStream,
) -> aclError {
    entry("aclrtLaunchKernel", || {
        let (function, stream) =
            match prepare(func_handle, num_blocks, args_data, args_size, stream) {
                Ok(p) => p,
                Err(code) => return code,
            };
        let table = alloc_table();
        if !table.is_device_memory(args_data as usize, args_size, stream.device) {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                format!(
                    "kernel {}: argsData {args_data:p} ({args_size} bytes) is not device memory of device {} \
                     (aclrtLaunchKernel takes its argument block in device memory of the launching device; \
                     host-memory arguments go through aclrtLaunchKernelWithHostArgs)",
                    function.kernel.name(),
                    stream.device
                ),
            );
        }
        // SAFETY: a live device allocation of at least `args_size` bytes, checked under the table
        // lock, which is still held.
        let args = unsafe { read_block(args_data, args_size) };
        drop(table);
        launch(function, num_blocks, args, &stream)
    })
}

/// `aclrtLaunchKernelWithHostArgs`: the argument block is in host memory. No launch configuration
/// and no placeholders are needed by these kernels; the emulator accepts none.
#[allow(clippy::too_many_arguments)] // the C signature
pub(super) unsafe extern "C" fn aclrtLaunchKernelWithHostArgs(
    func_handle: aclrtFuncHandle,
    num_blocks: u32,
    stream: aclrtStream,
    cfg: *mut aclrtLaunchKernelCfg,
    host_args: *mut c_void,
    args_size: usize,
    place_holder_array: *mut aclrtPlaceHolderInfo,
    place_holder_num: usize,
) -> aclError {
    entry("aclrtLaunchKernelWithHostArgs", || {
        // SAFETY: `cfg` is null or valid (C contract).
        if !cfg.is_null() && unsafe { (*cfg).numAttrs } != 0 {
            return fail(
                ACL_ERROR_RT_FEATURE_NOT_SUPPORT,
                "the emulator supports no launch attributes (cfg must be null or have numAttrs 0)",
            );
        }
        if place_holder_num != 0 || !place_holder_array.is_null() {
            return fail(
                ACL_ERROR_RT_FEATURE_NOT_SUPPORT,
                "the emulator supports no placeholders (placeHolderArray null, placeHolderNum 0)",
            );
        }
        let (function, stream) =
            match prepare(func_handle, num_blocks, host_args, args_size, stream) {
                Ok(p) => p,
                Err(code) => return code,
            };
        let table = alloc_table();
        if !table.is_host_memory(host_args as usize, args_size) {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                format!(
                    "kernel {}: hostArgs {host_args:p} ({args_size} bytes) is device memory; \
                     aclrtLaunchKernelWithHostArgs takes its argument block in host memory",
                    function.kernel.name()
                ),
            );
        }
        drop(table);
        // SAFETY: `args_size` readable host bytes at `host_args` (C contract).
        let args = unsafe { read_block(host_args, args_size) };
        launch(function, num_blocks, args, &stream)
    })
}

/// Checks what both launch forms share: the function, its device against the stream's, the grid and
/// the block size.
fn prepare(
    func_handle: aclrtFuncHandle,
    num_blocks: u32,
    args_data: *const c_void,
    args_size: usize,
    stream: aclrtStream,
) -> Result<(EmuFunction, Arc<stream::EmuStream>), aclError> {
    let emu = emu();
    let Some(function) = lock(&emu.objects)
        .funcs
        .get(&(func_handle as usize))
        .copied()
    else {
        return Err(fail(
            ACL_ERROR_RT_INVALID_HANDLE,
            format!("function {func_handle:p} does not exist (its binary was unloaded, or its device was reset)"),
        ));
    };
    let stream = stream::resolve(stream)?;
    let kernel = function.kernel;
    if function.device != stream.device {
        return Err(fail(
            ACL_ERROR_RT_STREAM_CONTEXT,
            format!(
                "kernel {} was loaded on device {}, the stream is on device {}",
                kernel.name(),
                function.device,
                stream.device
            ),
        ));
    }
    if num_blocks == 0 {
        return Err(fail(
            ACL_ERROR_INVALID_PARAM,
            format!("kernel {}: numBlocks must be at least 1", kernel.name()),
        ));
    }
    if args_data.is_null() {
        return Err(fail(
            ACL_ERROR_INVALID_PARAM,
            format!(
                "kernel {}: the argument block pointer is null",
                kernel.name()
            ),
        ));
    }
    let expected = 8 * kernel.num_args();
    if args_size != expected {
        return Err(fail(
            ACL_ERROR_INVALID_PARAM,
            format!(
                "kernel {} takes {} GM-address arguments: the argument block must be {expected} bytes, got {args_size}",
                kernel.name(),
                kernel.num_args(),
            ),
        ));
    }
    Ok((function, stream))
}

/// Copies the argument block out of the caller's memory.
///
/// # Safety
/// `args_size` readable bytes at `data`, a multiple of 8.
unsafe fn read_block(data: *const c_void, args_size: usize) -> Vec<u64> {
    let mut args = vec![0u64; args_size / 8];
    // SAFETY: `args_size` readable bytes at `data` (this function's contract); `args` has that many.
    unsafe {
        std::ptr::copy_nonoverlapping(data.cast::<u8>(), args.as_mut_ptr().cast::<u8>(), args_size)
    };
    args
}

/// Queues the launch on the stream.
fn launch(
    function: EmuFunction,
    num_blocks: u32,
    args: Vec<u64>,
    stream: &Arc<stream::EmuStream>,
) -> aclError {
    let emu = emu();
    let kernel = function.kernel;
    let device = stream.device;
    // The kernel's share of the UB, as on the chip (profile::DeviceProfile::ub_bytes).
    let ub_bytes = emu.config.profile.ub_bytes;
    let threads = emu.config.kernel_threads;
    stream.submit(Box::new(move || {
        let table = bytes_access();
        let regions = table.regions(device);
        // SAFETY: `args` has num_args() entries; `regions` are the live allocations of the device,
        // which stay allocated (the table is held for reading: no free) and untouched by anyone
        // else (the device-bytes turn is held) until `table` is dropped.
        let result = unsafe { kernel.run_blocks(&args, num_blocks, &regions, ub_bytes, threads) };
        drop(table);
        let dev = &emu.devices[device as usize];
        lock(&dev.stats).launches += 1;
        let mut history = lock(&dev.launches);
        if history.len() == LAUNCH_HISTORY {
            history.pop_front();
        }
        let (counters, fault) = match result {
            Ok(c) => (c, None),
            Err(m) => (Vec::new(), Some(m)),
        };
        history.push_back(LaunchRecord {
            kernel: kernel.name().to_string(),
            blocks: num_blocks,
            counters,
            fault: fault.clone(),
        });
        match fault {
            None => Ok(()),
            Some(m) => Err((ACL_ERROR_RT_VECTOR_CORE_EXCEPTION, m)),
        }
    }));
    ACL_SUCCESS
}
