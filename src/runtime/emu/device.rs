//! Initialisation, devices and their profile.
//!
//! AscendCL facts modelled (hicann/runtime `docs/zh/api_ref/04_device_management.md`, `acl_rt.h`):
//! `aclrtSetDevice` binds the calling thread to the device's default context and adds one to a
//! process-wide reference count; `aclrtResetDevice` subtracts one, and only when the count reaches zero
//! are the device's resources released (after its queued work finishes).
#![allow(non_snake_case)]

use super::*;
use ascend_sys::{aclDeviceInfo, aclrtDevAttr};
use std::os::raw::c_char;

pub(super) unsafe extern "C" fn aclInit(_config_path: *const c_char) -> aclError {
    let emu = emu();
    match emu
        .state
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => ACL_SUCCESS,
        Err(1) => fail(ACL_ERROR_REPEAT_INITIALIZE, "aclInit was already called"),
        Err(_) => fail(
            ACL_ERROR_REPEAT_INITIALIZE,
            "aclInit after aclFinalize: AscendCL initialises once per process",
        ),
    }
}

pub(super) unsafe extern "C" fn aclFinalize() -> aclError {
    let emu = emu();
    match emu
        .state
        .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => ACL_SUCCESS,
        Err(2) => fail(ACL_ERROR_REPEAT_FINALIZE, "aclFinalize was already called"),
        Err(_) => fail(ACL_ERROR_UNINITIALIZE, "aclFinalize before aclInit"),
    }
}

pub(super) unsafe extern "C" fn aclGetRecentErrMsg() -> *const c_char {
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        match r.0.take() {
            Some(message) => {
                r.1 = CString::new(message.replace('\0', " ")).unwrap_or_default();
                r.1.as_ptr()
            }
            None => std::ptr::null(),
        }
    })
}

fn check_id(id: i64) -> Result<u32, aclError> {
    let n = emu().devices.len() as i64;
    if (0..n).contains(&id) {
        Ok(id as u32)
    } else {
        Err(fail(
            ACL_ERROR_RT_INVALID_DEVICEID,
            format!("device id {id}: the emulator has devices 0..{n}"),
        ))
    }
}

pub(super) unsafe extern "C" fn aclrtSetDevice(device_id: i32) -> aclError {
    entry("aclrtSetDevice", || {
        let dev = match check_id(device_id.into()) {
            Ok(d) => d,
            Err(code) => return code,
        };
        let mut inner = lock(&emu().devices[dev as usize].inner);
        inner.refcount += 1;
        CURRENT.with(|c| c.set(Some((dev, inner.generation))));
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtGetDevice(device_id: *mut i32) -> aclError {
    entry("aclrtGetDevice", || {
        if device_id.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "deviceId is null");
        }
        match current_device() {
            Ok(dev) => {
                // SAFETY: non-null and writable (C contract).
                unsafe { *device_id = dev as i32 };
                ACL_SUCCESS
            }
            Err(code) => code,
        }
    })
}

pub(super) unsafe extern "C" fn aclrtResetDevice(device_id: i32) -> aclError {
    entry("aclrtResetDevice", || reset(device_id, false))
}

/// Releases the device whatever the number of aclrtSetDevice calls on it (acl_rt.h,
/// aclrtResetDeviceForce: one call resets a device set several times).
pub(super) unsafe extern "C" fn aclrtResetDeviceForce(device_id: i32) -> aclError {
    entry("aclrtResetDeviceForce", || reset(device_id, true))
}

fn reset(device_id: i32, force: bool) -> aclError {
    {
        let dev = match check_id(device_id.into()) {
            Ok(d) => d,
            Err(code) => return code,
        };
        let emu = emu();
        let state = &emu.devices[dev as usize];
        let mut inner = lock(&state.inner);
        if inner.refcount == 0 {
            return fail(
                ACL_ERROR_RT_CONTEXT_NULL,
                format!("resetting device {dev} without a matching aclrtSetDevice"),
            );
        }
        inner.refcount = if force { 0 } else { inner.refcount - 1 };
        if inner.refcount > 0 {
            return ACL_SUCCESS;
        }
        // The last reference: wait for queued work, then release every resource of the device.
        let (streams, events) = {
            let mut objects = lock(&emu.objects);
            let streams: Vec<_> = objects
                .streams
                .iter()
                .filter(|(_, s)| s.device == dev)
                .map(|(h, _)| *h)
                .collect();
            let streams: Vec<_> = streams
                .into_iter()
                .filter_map(|h| objects.streams.remove(&h))
                .collect();
            let events: Vec<_> = objects
                .events
                .iter()
                .filter(|(_, e)| e.device == dev)
                .map(|(h, _)| *h)
                .collect();
            let events: Vec<_> = events
                .into_iter()
                .filter_map(|h| objects.events.remove(&h))
                .collect();
            objects.bins.retain(|_, b| b.device != dev);
            objects.funcs.retain(|_, f| f.device != dev);
            (streams, events)
        };
        for stream in &streams {
            stream.shutdown(false);
        }
        for event in &events {
            event.kill();
        }
        let freed = alloc_table_mut().release_device(dev);
        {
            let mut stats = lock(&state.stats);
            stats.freed_by_reset += freed;
            stats.live_allocations = 0;
            stats.live_bytes = 0;
        }
        inner.generation += 1;
        inner.default_stream = None;
        CURRENT.with(|c| {
            if matches!(c.get(), Some((d, _)) if d == dev) {
                c.set(None)
            }
        });
        ACL_SUCCESS
    }
}

pub(super) unsafe extern "C" fn aclrtGetDeviceCount(count: *mut u32) -> aclError {
    entry("aclrtGetDeviceCount", || {
        if count.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "count is null");
        }
        // SAFETY: non-null, and the caller provides a writable u32 (C contract).
        unsafe { *count = emu().devices.len() as u32 };
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtSynchronizeDevice() -> aclError {
    entry("aclrtSynchronizeDevice", || {
        let dev = match current_device() {
            Ok(d) => d,
            Err(code) => return code,
        };
        tally(dev, |s| s.host_waits += 1);
        let streams: Vec<_> = lock(&emu().objects)
            .streams
            .values()
            .filter(|s| s.device == dev)
            .cloned()
            .collect();
        let mut first = None;
        for stream in streams {
            if let Err(fault) = stream.synchronize() {
                first.get_or_insert(fault);
            }
        }
        match first {
            None => ACL_SUCCESS,
            Some((code, message)) => fail(code, message),
        }
    })
}

fn attribute(
    name: &'static str,
    device: i64,
    value: *mut i64,
    pick: impl FnOnce(&DeviceProfile) -> Option<i64>,
) -> aclError {
    entry(name, || {
        if value.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "value is null");
        }
        if let Err(code) = check_id(device) {
            return code;
        }
        match pick(&emu().config.profile) {
            Some(v) => {
                // SAFETY: non-null, and the caller provides a writable i64 (C contract).
                unsafe { *value = v };
                ACL_SUCCESS
            }
            None => fail(
                ACL_ERROR_INVALID_PARAM,
                format!("{name}: attribute not supported by the emulator"),
            ),
        }
    })
}

pub(super) unsafe extern "C" fn aclrtGetDeviceInfo(
    device_id: u32,
    attr: aclrtDevAttr,
    value: *mut i64,
) -> aclError {
    attribute(
        "aclrtGetDeviceInfo",
        device_id.into(),
        value,
        |p| match attr {
            ascend_sys::ACL_DEV_ATTR_AICORE_CORE_NUM => Some(p.ai_cores.into()),
            ascend_sys::ACL_DEV_ATTR_VECTOR_CORE_NUM => Some(p.vector_cores.into()),
            ascend_sys::ACL_DEV_ATTR_UBUF_PER_VECTOR_CORE => Some(p.reported_ub_bytes().into()),
            _ => None,
        },
    )
}

pub(super) unsafe extern "C" fn aclGetDeviceCapability(
    device_id: u32,
    info: aclDeviceInfo,
    value: *mut i64,
) -> aclError {
    attribute(
        "aclGetDeviceCapability",
        device_id.into(),
        value,
        |p| match info {
            ascend_sys::ACL_DEVICE_INFO_AI_CORE_NUM => Some(p.ai_cores.into()),
            ascend_sys::ACL_DEVICE_INFO_VECTOR_CORE_NUM => Some(p.vector_cores.into()),
            _ => None,
        },
    )
}

pub(super) unsafe extern "C" fn aclrtGetSocName() -> *const c_char {
    let emu = emu();
    if emu.state.load(Ordering::Acquire) != 1 {
        return std::ptr::null();
    }
    emu.soc_name.as_ptr()
}
