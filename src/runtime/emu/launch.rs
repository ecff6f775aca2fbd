//! Kernel binaries and launches.
//!
//! The emulator's binary is a manifest (`ascend-cold-emu-binary 1`, then one entry name per line)
//! naming kernels compiled for the host. `aclrtLaunchKernel` takes the packed argument block as the real
//! runtime does: the kernel's parameters laid out in declaration order (every parameter here is an
//! 8-byte GM address, so `argsSize` must be 8 × the kernel's parameter count). The block is copied at the
//! call; the launch runs on the stream's worker with the device allocation table locked (memory cannot be
//! freed under a running kernel), every block of it, each GM access checked against the live allocations
//! of the stream's device. A violation becomes the stream's sticky error
//! (`ACL_ERROR_RT_VECTOR_CORE_EXCEPTION`) with the kernel's message.
#![allow(non_snake_case)]

use super::*;
use crate::kernels::HostKernel;
use ascend_sys::{aclrtBinHandle, aclrtBinaryLoadOptions, aclrtFuncHandle, aclrtStream};
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

pub(super) unsafe extern "C" fn aclrtBinaryLoadFromData(
    data: *const c_void,
    length: usize,
    _options: *const aclrtBinaryLoadOptions,
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
        let emu = emu();
        let mut objects = lock(&emu.objects);
        let Some(bin) = objects.bins.get(&(bin_handle as usize)) else {
            return fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("binary {bin_handle:p} is not loaded (unloaded, or its device was reset)"),
            );
        };
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

pub(super) unsafe extern "C" fn aclrtLaunchKernel(
    func_handle: aclrtFuncHandle,
    num_blocks: u32,
    args_data: *const c_void,
    args_size: usize,
    stream: aclrtStream,
) -> aclError {
    entry("aclrtLaunchKernel", || {
        let emu = emu();
        let Some(function) = lock(&emu.objects)
            .funcs
            .get(&(func_handle as usize))
            .copied()
        else {
            return fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("function {func_handle:p} does not exist (its binary was unloaded, or its device was reset)"),
            );
        };
        let stream = match stream::resolve(stream) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let kernel = function.kernel;
        if function.device != stream.device {
            return fail(
                ACL_ERROR_RT_STREAM_CONTEXT,
                format!(
                    "kernel {} was loaded on device {}, the stream is on device {}",
                    kernel.name(),
                    function.device,
                    stream.device
                ),
            );
        }
        if num_blocks == 0 {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                format!("kernel {}: numBlocks must be at least 1", kernel.name()),
            );
        }
        let expected = 8 * kernel.num_args();
        if args_size != expected || (args_size > 0 && args_data.is_null()) {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                format!(
                    "kernel {} takes {} GM-address arguments: argsSize must be {expected} bytes, got {args_size}{}",
                    kernel.name(),
                    kernel.num_args(),
                    if args_data.is_null() { " (argsData null)" } else { "" }
                ),
            );
        }
        let mut args = vec![0u64; kernel.num_args()];
        if args_size > 0 {
            // SAFETY: `args_size` readable bytes at `args_data` (C contract); `args` has that many bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    args_data.cast::<u8>(),
                    args.as_mut_ptr().cast::<u8>(),
                    args_size,
                )
            };
        }
        let device = stream.device;
        // Kernels get the UB less what the framework reserves, as on the chip (tiling::UB_RESERVED_BYTES).
        let ub_bytes = emu
            .config
            .profile
            .ub_bytes
            .saturating_sub(crate::tiling::UB_RESERVED_BYTES);
        let threads = emu.config.kernel_threads;
        stream.submit(Box::new(move || {
            let table = lock(&emu.mem);
            let regions = table.regions(device);
            // SAFETY: `args` has num_args() entries; `regions` are the live allocations of the device,
            // which stay allocated and untouched by anyone else while the table lock is held.
            let result =
                unsafe { kernel.run_blocks(&args, num_blocks, &regions, ub_bytes, threads) };
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
    })
}
