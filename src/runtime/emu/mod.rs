//! The AscendCL emulator: the same C entry points as `libascendcl.so`, implemented over host memory.
//!
//! It is a provider of the driver table ([`ascend_sys::AclFunctions`]), not a test double: every entry
//! point has the C signature of the header and implements the documented behaviour, returning the same
//! error codes the real runtime returns (`acl_base_rt.h`, `rt_error_codes.h`).
//!
//! - `device.rs`: init/finalize, per-thread current device, reset with AscendCL's reference count, the
//!   device profile (SoC name, core counts, UB size).
//! - `memory.rs`: the allocation table (opaque, bounds-checked device pointers), memset and memcpy with
//!   kind and direction checks.
//! - `stream.rs`: in-order execution asynchronous to the host (drain jobs on rayon's pool; waiting hosts
//!   run queued tasks nobody runs), sticky errors.
//! - `event.rs`: record, synchronise, elapsed time from a host clock, stream waits.
//! - `launch.rs`: binary load from the emulator manifest, function lookup, kernel launch over every block.
//!
//! This module's public items ([`EmuConfig`], [`parse_profile`], [`configure`], [`stats`],
//! [`last_launches`]) are emulator-only inspection and configuration: code that runs the same on a board
//! must not depend on them.

mod device;
mod event;
mod launch;
mod memory;
mod stream;

use crate::profile::{DeviceProfile, UB_RESERVED_BYTES};
use crate::runtime::codes::*;
use ascend_sys::{aclError, AclFunctions};
use once_cell::sync::{Lazy, OnceCell};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use crate::kernels::BlockCounters;

/// The table of emulator entry points, one per AscendCL function.
pub(crate) static TABLE: AclFunctions = AclFunctions {
    aclInit: device::aclInit,
    aclFinalize: device::aclFinalize,
    aclGetRecentErrMsg: device::aclGetRecentErrMsg,
    aclrtSetDevice: device::aclrtSetDevice,
    aclrtGetDevice: device::aclrtGetDevice,
    aclrtResetDevice: device::aclrtResetDevice,
    aclrtResetDeviceForce: device::aclrtResetDeviceForce,
    aclrtGetDeviceCount: device::aclrtGetDeviceCount,
    aclrtSynchronizeDevice: device::aclrtSynchronizeDevice,
    aclrtGetDeviceInfo: device::aclrtGetDeviceInfo,
    aclGetDeviceCapability: device::aclGetDeviceCapability,
    aclrtGetSocName: device::aclrtGetSocName,
    aclrtCreateStream: stream::aclrtCreateStream,
    aclrtDestroyStream: stream::aclrtDestroyStream,
    aclrtDestroyStreamForce: stream::aclrtDestroyStreamForce,
    aclrtSynchronizeStream: stream::aclrtSynchronizeStream,
    aclrtSynchronizeStreamWithTimeout: stream::aclrtSynchronizeStreamWithTimeout,
    aclrtStreamQuery: stream::aclrtStreamQuery,
    aclrtStreamWaitEvent: event::aclrtStreamWaitEvent,
    aclrtCreateEvent: event::aclrtCreateEvent,
    aclrtDestroyEvent: event::aclrtDestroyEvent,
    aclrtRecordEvent: event::aclrtRecordEvent,
    aclrtQueryEventStatus: event::aclrtQueryEventStatus,
    aclrtSynchronizeEvent: event::aclrtSynchronizeEvent,
    aclrtEventElapsedTime: event::aclrtEventElapsedTime,
    aclrtMalloc: memory::aclrtMalloc,
    aclrtFree: memory::aclrtFree,
    aclrtMallocHost: memory::aclrtMallocHost,
    aclrtFreeHost: memory::aclrtFreeHost,
    aclrtMemset: memory::aclrtMemset,
    aclrtMemcpy: memory::aclrtMemcpy,
    aclrtMemcpyAsync: memory::aclrtMemcpyAsync,
    aclrtBinaryLoadFromData: launch::aclrtBinaryLoadFromData,
    aclrtBinaryUnLoad: launch::aclrtBinaryUnLoad,
    aclrtBinaryGetFunction: launch::aclrtBinaryGetFunction,
    aclrtLaunchKernel: launch::aclrtLaunchKernel,
    aclrtLaunchKernelWithHostArgs: launch::aclrtLaunchKernelWithHostArgs,
};

/// The emulator's AscendCL entry points, with the C signatures of `acl.h`.
///
/// What `libascendcl.so` would give a host program, over host memory: a runtime author can call them
/// directly to test code that owns its memory and streams, and `standin-acl` exports them under their
/// C names. Calling them is `unsafe` with the C API's own contracts; the emulator additionally refuses,
/// with an AscendCL error code and `aclGetRecentErrMsg`, what a board would only corrupt.
///
/// ```
/// let table = ascend_cold::runtime::emu::table();
/// let mut count = 0u32;
/// // SAFETY: `count` is a writable u32. Before aclInit the call fails with a code, never a crash.
/// let code = unsafe { (table.aclrtGetDeviceCount)(&mut count) };
/// assert!(code == ascend_sys::ACL_SUCCESS || code == ascend_sys::ACL_ERROR_UNINITIALIZE);
/// ```
pub fn table() -> &'static AclFunctions {
    &TABLE
}

/// Parses an emulated device profile, `NAME[,aic=N][,aiv=N][,ub=BYTES]` (the format of
/// `ASCEND_COLD_EMU_PROFILE`), starting from [`DeviceProfile::ascend_910b`] (e.g.
/// `Ascend910B4,aic=20,aiv=40`). `ub` is the Unified Buffer per vector core as the device reports it
/// (`ACL_DEV_ATTR_UBUF_PER_VECTOR_CORE`); the profile keeps the kernel's share of it
/// ([`DeviceProfile::usable_ub_bytes`]), which must not be empty.
///
/// # Errors
/// [`crate::Error::BadParameter`] naming `ASCEND_COLD_EMU_PROFILE`, with the format.
pub fn parse_profile(spec: &str) -> crate::Result<DeviceProfile> {
    let mut parts = spec.split(',').map(str::trim);
    let mut profile = DeviceProfile::ascend_910b();
    match parts.next() {
        Some(name) if !name.is_empty() => profile.soc_name = name.to_string(),
        _ => {}
    }
    for part in parts {
        let bad = || {
            crate::Error::parameter(
                "ASCEND_COLD_EMU_PROFILE",
                format!(
                    "NAME[,aic=N][,aiv=N][,ub=BYTES] with positive integers, ub above the \
                     {UB_RESERVED_BYTES} bytes the framework reserves"
                ),
                spec,
            )
        };
        let (key, value) = part.split_once('=').ok_or_else(bad)?;
        let value: u32 = value.trim().parse().map_err(|_| bad())?;
        if value == 0 {
            return Err(bad());
        }
        match key.trim() {
            "aic" => profile.ai_cores = value,
            "aiv" => profile.vector_cores = value,
            "ub" if value > UB_RESERVED_BYTES => {
                profile.ub_bytes = DeviceProfile::usable_ub_bytes(value)
            }
            _ => return Err(bad()),
        }
    }
    Ok(profile)
}

/// Emulator configuration, fixed at first use (see [`configure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuConfig {
    /// Number of emulated devices (`aclrtGetDeviceCount`). Default 2, so cross-device misuse is testable.
    pub devices: u32,
    /// Emulated HBM capacity per device: allocations beyond it fail with `ACL_ERROR_RT_MEMORY_ALLOCATION`
    /// without touching host memory. Default 64 GiB (a 910B's HBM).
    pub hbm_bytes: u64,
    /// The device profile every emulated device reports (its `ub_bytes` is also the Unified Buffer
    /// capacity the kernel emulation enforces).
    pub profile: DeviceProfile,
    /// Host threads a kernel launch spreads its blocks over.
    pub kernel_threads: usize,
}

impl Default for EmuConfig {
    fn default() -> Self {
        EmuConfig {
            devices: 2,
            hbm_bytes: 64 << 30,
            profile: DeviceProfile::ascend_910b(),
            kernel_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
        }
    }
}

impl EmuConfig {
    /// The default, overridden by `ASCEND_COLD_EMU_PROFILE` (see [`parse_profile`]) and
    /// `ASCEND_COLD_EMU_DEVICES`.
    pub fn from_env() -> crate::Result<Self> {
        let mut config = EmuConfig::default();
        if let Ok(spec) = std::env::var("ASCEND_COLD_EMU_PROFILE") {
            config.profile = parse_profile(&spec)?;
        }
        if let Ok(n) = std::env::var("ASCEND_COLD_EMU_DEVICES") {
            config.devices = n.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                crate::Error::parameter("ASCEND_COLD_EMU_DEVICES", "a positive integer", &n)
            })?;
        }
        Ok(config)
    }
}

static CONFIG: OnceCell<EmuConfig> = OnceCell::new();

/// Fixes the emulator's configuration. Must run before the emulator's first use; afterwards it succeeds
/// only if `config` equals the configuration in effect.
///
/// # Errors
/// [`crate::Error::BadParameter`] if the emulator already runs with a different configuration.
pub fn configure(config: EmuConfig) -> crate::Result<()> {
    let current = CONFIG.get_or_init(|| config.clone());
    if *current == config {
        Ok(())
    } else {
        Err(crate::Error::parameter(
            "emulator configuration",
            format!("{current:?} (fixed at first use)"),
            format!("{config:?}"),
        ))
    }
}

/// The configuration in effect (fixing it from the environment if nothing was configured yet).
///
/// # Errors
/// A malformed `ASCEND_COLD_EMU_PROFILE` or `ASCEND_COLD_EMU_DEVICES`.
pub fn config() -> crate::Result<EmuConfig> {
    CONFIG.get_or_try_init(EmuConfig::from_env).cloned()
}

/// Allocation and launch counters of one emulated device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmuStats {
    /// Allocations currently live.
    pub live_allocations: u64,
    /// Bytes currently allocated (after AscendCL's 32-byte rounding and padding).
    pub live_bytes: u64,
    /// `aclrtMalloc` successes since start.
    pub total_allocs: u64,
    /// `aclrtFree` successes since start.
    pub total_frees: u64,
    /// Allocations released by `aclrtResetDevice` instead of `aclrtFree`.
    pub freed_by_reset: u64,
    /// Kernel launches executed (successfully or not).
    pub launches: u64,
    /// Kernel binaries loaded on the device and not unloaded.
    pub live_binaries: u64,
    /// Function handles (`aclrtBinaryGetFunction` results) the runtime holds for the device.
    pub live_function_handles: u64,
    /// Host-to-device copies accepted (`aclrtMemcpy` and `aclrtMemcpyAsync`).
    pub copies_to_device: u64,
    /// Device-to-host copies accepted.
    pub copies_to_host: u64,
    /// Device-to-device copies accepted.
    pub copies_on_device: u64,
    /// Times the host waited for the device: `aclrtSynchronizeStream` (with or without timeout),
    /// `aclrtSynchronizeDevice`, `aclrtSynchronizeEvent`, and an `aclrtMemcpyAsync` from or to
    /// pageable host memory, which returns only once the copy is done.
    pub host_waits: u64,
}

/// Adds to the counters of emulated device `device` (a device the caller already resolved).
fn tally(device: u32, update: impl FnOnce(&mut EmuStats)) {
    if let Some(dev) = emu().devices.get(device as usize) {
        update(&mut lock(&dev.stats));
    }
}

/// Counts one accepted copy of `kind` on `device`.
fn count_copy(device: u32, kind: ascend_sys::aclrtMemcpyKind) {
    tally(device, |s| match kind {
        ascend_sys::ACL_MEMCPY_HOST_TO_DEVICE => s.copies_to_device += 1,
        ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST => s.copies_to_host += 1,
        ascend_sys::ACL_MEMCPY_DEVICE_TO_DEVICE => s.copies_on_device += 1,
        _ => {}
    });
}

/// One executed kernel launch, as the emulator saw it.
#[derive(Debug, Clone)]
pub struct LaunchRecord {
    /// The kernel entry point.
    pub kernel: String,
    /// `numBlocks` of the launch.
    pub blocks: u32,
    /// Every block's counters, by block index (empty if the launch faulted).
    pub counters: Vec<BlockCounters>,
    /// The fault message, if the kernel faulted.
    pub fault: Option<String>,
}

/// How many launch records each device keeps.
const LAUNCH_HISTORY: usize = 32;

/// Counters of emulated device `device` (emulator-only inspection).
///
/// # Errors
/// [`crate::Error::BadParameter`] for a device the emulator does not have.
pub fn stats(device: i32) -> crate::Result<EmuStats> {
    let emu = emu();
    let (device, dev) = emu.device(device)?;
    let mut stats = *lock(&dev.stats);
    let objects = lock(&emu.objects);
    stats.live_binaries = objects.bins.values().filter(|b| b.device == device).count() as u64;
    stats.live_function_handles = objects
        .funcs
        .values()
        .filter(|f| f.device == device)
        .count() as u64;
    Ok(stats)
}

/// The most recent kernel launches executed on emulated device `device`, oldest first (at most 32).
///
/// # Errors
/// [`crate::Error::BadParameter`] for a device the emulator does not have.
pub fn last_launches(device: i32) -> crate::Result<Vec<LaunchRecord>> {
    let emu = emu();
    let (_, dev) = emu.device(device)?;
    Ok(lock(&dev.launches).iter().cloned().collect())
}

// ---- shared state -------------------------------------------------------------------------------------

struct DevState {
    inner: Mutex<DevInner>,
    stats: Mutex<EmuStats>,
    launches: Mutex<VecDeque<LaunchRecord>>,
}

#[derive(Default)]
struct DevInner {
    /// aclrtSetDevice calls not yet matched by aclrtResetDevice.
    refcount: u64,
    /// Bumped when the device's resources are released; stale thread bindings and handles die with it.
    generation: u64,
    /// The implicit stream that a null `aclrtStream` means.
    default_stream: Option<usize>,
}

struct Emu {
    config: EmuConfig,
    soc_name: CString,
    /// 0 = not initialised, 1 = initialised, 2 = finalized.
    state: AtomicU8,
    devices: Vec<DevState>,
    /// The allocation table. Launch and copy checks read it; kernels, copies and memsets hold it for
    /// reading while they touch device bytes (nothing is freed under them); allocations and frees
    /// write it. A launch's checks must not wait for a running kernel, as on a board (they still do
    /// while a malloc or free waits for one: std's RwLock queues readers behind a waiting writer).
    mem: RwLock<memory::MemTable>,
    /// Held by whoever reads or writes device bytes (a kernel, a copy, a memset), after `mem`: they
    /// take turns, so the emulator never races on device memory itself.
    device_bytes: Mutex<()>,
    objects: Mutex<Objects>,
    next_handle: AtomicUsize,
}

#[derive(Default)]
struct Objects {
    streams: HashMap<usize, Arc<stream::EmuStream>>,
    events: HashMap<usize, Arc<event::EmuEvent>>,
    bins: HashMap<usize, launch::EmuBinary>,
    funcs: HashMap<usize, launch::EmuFunction>,
}

static EMU: Lazy<Emu> = Lazy::new(|| {
    let config = config().unwrap_or_default();
    Emu {
        soc_name: CString::new(config.profile.soc_name.replace('\0', "")).unwrap_or_default(),
        state: AtomicU8::new(0),
        devices: (0..config.devices)
            .map(|_| DevState {
                inner: Mutex::new(DevInner::default()),
                stats: Mutex::new(EmuStats::default()),
                launches: Mutex::new(VecDeque::new()),
            })
            .collect(),
        mem: RwLock::new(memory::MemTable::default()),
        device_bytes: Mutex::new(()),
        objects: Mutex::new(Objects::default()),
        next_handle: AtomicUsize::new(1),
        config,
    }
});

fn emu() -> &'static Emu {
    &EMU
}

impl Emu {
    /// Emulated device `id` (as `Device::id` numbers it), checked.
    fn device(&self, id: i32) -> crate::Result<(u32, &DevState)> {
        u32::try_from(id)
            .ok()
            .and_then(|i| Some((i, self.devices.get(i as usize)?)))
            .ok_or_else(|| {
                crate::Error::parameter("emulated device", format!("0..{}", self.devices.len()), id)
            })
    }

    /// A fresh opaque handle: never dereferenced, never reused, never null, 64-byte spaced so it cannot
    /// be mistaken for a small integer.
    fn handle(&self) -> usize {
        self.next_handle.fetch_add(1, Ordering::Relaxed) << 6
    }

    fn generation(&self, device: u32) -> u64 {
        lock(&self.devices[device as usize].inner).generation
    }
}

/// Locks a mutex, recovering from poisoning: the emulator's invariants hold between statements, and an
/// entry point must never unwind into C.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The allocation table, for checks (see [`Emu::mem`]).
fn alloc_table() -> RwLockReadGuard<'static, memory::MemTable> {
    emu().mem.read().unwrap_or_else(|e| e.into_inner())
}

/// The allocation table, to allocate or free.
fn alloc_table_mut() -> RwLockWriteGuard<'static, memory::MemTable> {
    emu().mem.write().unwrap_or_else(|e| e.into_inner())
}

/// The allocation table and the turn to touch device bytes (see [`Emu::device_bytes`]).
struct BytesAccess {
    table: RwLockReadGuard<'static, memory::MemTable>,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for BytesAccess {
    type Target = memory::MemTable;
    fn deref(&self) -> &memory::MemTable {
        &self.table
    }
}

fn bytes_access() -> BytesAccess {
    let table = alloc_table();
    BytesAccess {
        table,
        _turn: lock(&emu().device_bytes),
    }
}

// ---- per-thread state: current device, recent error message -------------------------------------------

thread_local! {
    /// (device, generation) bound by aclrtSetDevice on this thread.
    static CURRENT: std::cell::Cell<Option<(u32, u64)>> = const { std::cell::Cell::new(None) };
    /// The message aclGetRecentErrMsg returns, and the buffer it last handed out.
    static RECENT: RefCell<(Option<String>, CString)> = RefCell::new((None, CString::default()));
}

/// Records `message` for aclGetRecentErrMsg on this thread and returns `code`.
fn fail(code: i32, message: impl Into<String>) -> aclError {
    let message = message.into();
    RECENT.with(|r| r.borrow_mut().0 = Some(format!("{} ({code}): {message}", error_name(code))));
    code
}

/// The calling thread's current device, if its binding is still valid.
fn current_device() -> Result<u32, aclError> {
    let emu = emu();
    match CURRENT.with(|c| c.get()) {
        Some((dev, generation)) if emu.generation(dev) == generation => Ok(dev),
        Some((dev, _)) => Err(fail(
            ACL_ERROR_RT_CONTEXT_NULL,
            format!("device {dev} was reset since this thread set it; call aclrtSetDevice again"),
        )),
        None => Err(fail(
            ACL_ERROR_RT_CONTEXT_NULL,
            "no current device on this thread: call aclrtSetDevice first",
        )),
    }
}

/// Runs an entry point's body: checks initialisation and turns a panic (an emulator bug) into
/// `ACL_ERROR_RT_INTERNAL_ERROR` instead of unwinding into C.
fn entry(name: &'static str, body: impl FnOnce() -> aclError) -> aclError {
    if emu().state.load(Ordering::Acquire) != 1 {
        return fail(
            ACL_ERROR_UNINITIALIZE,
            format!("{name}: AscendCL is not initialised (aclInit) or was finalized"),
        );
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(_) => fail(
            ACL_ERROR_RT_INTERNAL_ERROR,
            format!("{name}: emulator internal error"),
        ),
    }
}

/// A device-side failure carried by a stream until synchronisation: (code, message).
type Fault = (i32, String);

#[cfg(test)]
mod tests {
    //! The C-level behaviour the safe layer never exercises (it validates first).
    use super::*;
    use std::os::raw::c_void;

    fn code(f: impl FnOnce() -> aclError) -> (i32, String) {
        let c = f();
        // SAFETY: reads this thread's message (null or NUL-terminated).
        let m = unsafe {
            let p = (TABLE.aclGetRecentErrMsg)();
            if p.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        (c, m)
    }

    #[test]
    fn raw_entry_points_return_the_runtime_error_codes() {
        crate::runtime::emulator().unwrap();
        std::thread::spawn(move || {
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY (all calls below): valid out-pointers; deliberately invalid handles and sizes, which
            // the emulator must reject.
            unsafe {
                assert_eq!(
                    code(|| (TABLE.aclrtMalloc)(&mut p, 64, 0)).0,
                    ACL_ERROR_RT_CONTEXT_NULL
                );
                assert_eq!((TABLE.aclrtSetDevice)(1), ACL_SUCCESS);
                assert_eq!(
                    code(|| (TABLE.aclrtSetDevice)(99)).0,
                    ACL_ERROR_RT_INVALID_DEVICEID
                );
                assert_eq!(
                    code(|| (TABLE.aclrtMalloc)(&mut p, 0, 0)).0,
                    ACL_ERROR_INVALID_PARAM
                );
                assert_eq!(
                    code(|| (TABLE.aclrtMalloc)(&mut p, usize::MAX, 0)).0,
                    ACL_ERROR_RT_MEMORY_ALLOCATION
                );
                assert_eq!((TABLE.aclrtMalloc)(&mut p, 100, 0), ACL_SUCCESS);
                assert_eq!(p as usize % 64, 0);
                let mut host = [0u8; 100];
                // Kind says host-to-device, but the destination is host memory.
                let (c, m) = code(|| {
                    (TABLE.aclrtMemcpy)(
                        host.as_mut_ptr().cast(),
                        100,
                        p,
                        100,
                        ascend_sys::ACL_MEMCPY_HOST_TO_DEVICE,
                    )
                });
                assert_eq!(c, ACL_ERROR_RT_PARAM_INVALID, "{m}");
                assert_eq!(
                    (TABLE.aclrtMemcpy)(
                        host.as_mut_ptr().cast(),
                        100,
                        p,
                        100,
                        ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST
                    ),
                    ACL_SUCCESS
                );
                assert!(host.iter().all(|&b| b == 0xFF), "fresh memory is poisoned");
                assert_eq!(
                    code(|| (TABLE.aclrtMemcpy)(
                        host.as_mut_ptr().cast(),
                        50,
                        p,
                        100,
                        ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST
                    ))
                    .0,
                    ACL_ERROR_INVALID_PARAM
                );
                assert_eq!(
                    code(|| (TABLE.aclrtMemcpyAsync)(
                        host.as_mut_ptr().cast(),
                        100,
                        host.as_ptr().cast(),
                        100,
                        ascend_sys::ACL_MEMCPY_HOST_TO_HOST,
                        std::ptr::null_mut()
                    ))
                    .0,
                    ACL_ERROR_RT_FEATURE_NOT_SUPPORT
                );
                assert_eq!((TABLE.aclrtFree)(p), ACL_SUCCESS);
                assert_eq!(code(|| (TABLE.aclrtFree)(p)).0, ACL_ERROR_RT_MEMORY_FREE);
                let (c, m) = code(|| {
                    (TABLE.aclrtMemcpy)(
                        host.as_mut_ptr().cast(),
                        100,
                        p,
                        100,
                        ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST,
                    )
                });
                assert_eq!(
                    c, ACL_ERROR_RT_PARAM_INVALID,
                    "use after free is caught: {m}"
                );
                assert_eq!(
                    code(|| (TABLE.aclrtDestroyStream)(0x40 as *mut c_void)).0,
                    ACL_ERROR_RT_INVALID_HANDLE
                );
                assert_eq!(
                    code(|| (TABLE.aclrtBinaryLoadFromData)(
                        b"ELF".as_ptr().cast(),
                        3,
                        std::ptr::null(),
                        &mut p
                    ))
                    .0,
                    ACL_ERROR_INVALID_FILE
                );
                assert_eq!(
                    code(|| (TABLE.aclInit)(std::ptr::null())).0,
                    ACL_ERROR_REPEAT_INITIALIZE
                );
            }
        })
        .join()
        .unwrap();
    }

    /// Launch and copy checks read the allocation table; a kernel holds it for reading and the turn to
    /// touch device bytes. A check must not wait for a running kernel (it did while one lock did both).
    #[test]
    fn table_checks_do_not_wait_for_whoever_touches_device_bytes() {
        use std::sync::mpsc::channel;
        let (release, held) = channel::<()>();
        let (started, running) = channel::<()>();
        let kernel = std::thread::spawn(move || {
            let _bytes = bytes_access();
            started.send(()).unwrap();
            let _ = held.recv();
        });
        running.recv().unwrap();
        let (checked, done) = channel();
        std::thread::spawn(move || {
            let _ = alloc_table().is_host_memory(0x1000, 8);
            let _ = checked.send(());
        });
        let answered = done
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_ok();
        release.send(()).unwrap();
        kernel.join().unwrap();
        assert!(
            answered,
            "a table check waited for the holder of the device-bytes turn"
        );
    }

    /// From the only thread of the pool that would run the stream's drain job: a timed synchronise
    /// waits and times out rather than running the queued record itself (a task it took could
    /// outlast the timeout), and a record that aclrtDestroyStreamForce dropped ends the wait on its
    /// event instead of leaving it waiting for a record that never comes.
    #[test]
    fn waits_on_work_nobody_runs_end() {
        crate::runtime::emulator().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            let mut stream: ascend_sys::aclrtStream = std::ptr::null_mut();
            let mut event: ascend_sys::aclrtEvent = std::ptr::null_mut();
            // SAFETY (all calls): valid out-pointers and the handles they returned.
            unsafe {
                assert_eq!((TABLE.aclrtSetDevice)(1), ACL_SUCCESS);
                assert_eq!((TABLE.aclrtCreateStream)(&mut stream), ACL_SUCCESS);
                assert_eq!((TABLE.aclrtCreateEvent)(&mut event), ACL_SUCCESS);
                assert_eq!((TABLE.aclrtRecordEvent)(event, stream), ACL_SUCCESS);
                assert_eq!(
                    code(|| (TABLE.aclrtSynchronizeStreamWithTimeout)(stream, 20)).0,
                    ACL_ERROR_RT_STREAM_SYNC_TIMEOUT
                );
                assert_eq!((TABLE.aclrtDestroyStreamForce)(stream), ACL_SUCCESS);
                assert_eq!((TABLE.aclrtSynchronizeEvent)(event), ACL_SUCCESS);
                assert_eq!((TABLE.aclrtDestroyEvent)(event), ACL_SUCCESS);
            }
        });
    }
}
