//! [`Device`]: one NPU or emulated device, and the facts about it that tiling needs.
//!
//! # Threads and the current device
//! AscendCL binds devices to threads: `aclrtSetDevice` makes a device current for the calling thread
//! (and adds one to the device's process-wide reference count). Every safe call enters its device first:
//! if the calling thread is not bound to it yet, the crate calls `aclrtSetDevice` once for that thread,
//! so handles can move between threads freely. Code that also switches the current device itself on a
//! thread (interop) must switch it back before calling into this crate again on that thread.
//!
//! # Reset
//! [`Device::reset`] waits for the device's work and releases this crate's references to it
//! (one `aclrtResetDevice` per `aclrtSetDevice` it made); when no one else holds the device, AscendCL
//! frees its memory, streams, events and binaries. Every handle created before the reset then returns
//! [`Error::DeviceReset`] instead of touching freed resources, and its `Drop` releases nothing (the
//! reset already did).

use crate::profile::DeviceProfile;
use crate::runtime::{self, result, Driver, Provider};
use crate::{Error, Result};
use ascend_sys::AclFunctions;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// One device: an NPU through `libascendcl.so`, or an emulated one. Cheap to clone (a shared handle);
/// every handle to the same device is the same device ([`PartialEq`] compares identity).
///
/// ```
/// use ascend_cold::Device;
/// let device = Device::emulator()?;
/// let profile = device.profile()?;
/// assert!(profile.vector_cores > 0 && profile.ub_bytes > 0);
/// println!("{device}: {}", profile.soc_name);
/// # Ok::<(), ascend_cold::Error>(())
/// ```
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

pub(crate) struct DeviceInner {
    driver: &'static Driver,
    id: i32,
    /// Bumped by every reset; handles remember the generation they were made in.
    generation: AtomicU64,
    /// `aclrtSetDevice` calls this crate made since the last reset (each needs an `aclrtResetDevice`).
    set_calls: AtomicU64,
    /// Read-held by every call; write-held by reset, so no call runs on half-released resources.
    gate: RwLock<()>,
    profile: Mutex<Option<DeviceProfile>>,
}

/// Every device opened in this process, by provider and id: one shared state per device.
type Registry = Mutex<HashMap<(Provider, i32), Arc<DeviceInner>>>;

static DEVICES: Lazy<Registry> = Lazy::new(Default::default);

thread_local! {
    /// The device (by identity) and generation this thread is bound to, as far as this crate knows.
    static BOUND: std::cell::Cell<Option<(usize, u64)>> = const { std::cell::Cell::new(None) };
}

/// A device entered by the calling thread: its table, with resets held off until dropped.
pub(crate) struct Ctx<'a> {
    pub(crate) fns: &'a AclFunctions,
    _gate: RwLockReadGuard<'a, ()>,
}

impl Device {
    fn open(driver: &'static Driver, id: i32) -> Result<Device> {
        let fns = driver.fns()?;
        let count = result::device::count(fns)?;
        if id < 0 || id as u32 >= count {
            return Err(Error::parameter(
                "device id",
                format!("0..{count} ({} devices on {})", count, driver.origin),
                id,
            ));
        }
        let mut devices = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
        let inner = devices.entry((driver.provider, id)).or_insert_with(|| {
            Arc::new(DeviceInner {
                driver,
                id,
                generation: AtomicU64::new(0),
                set_calls: AtomicU64::new(0),
                gate: RwLock::new(()),
                profile: Mutex::new(None),
            })
        });
        Ok(Device {
            inner: Arc::clone(inner),
        })
    }

    /// Emulated device 0 (see [`crate::runtime::emu`] for its configuration).
    ///
    /// # Errors
    /// A malformed emulator configuration in the environment, or the runtime was finalized.
    pub fn emulator() -> Result<Device> {
        Device::emulator_device(0)
    }

    /// Emulated device `id` (the emulator has 2 by default; `ASCEND_COLD_EMU_DEVICES` changes that).
    ///
    /// # Errors
    /// As [`Device::emulator`], and [`Error::BadParameter`] for an id the emulator does not have.
    pub fn emulator_device(id: i32) -> Result<Device> {
        Device::open(runtime::emulator()?, id)
    }

    /// NPU `id` through `libascendcl.so`.
    ///
    /// # Errors
    /// [`Error::RuntimeMissing`] (with the paths tried and a remedy) without the library; an AscendCL
    /// error, or [`Error::BadParameter`] for an id the machine does not have.
    pub fn npu(id: i32) -> Result<Device> {
        Device::open(runtime::libascendcl()?, id)
    }

    /// NPU 0 if AscendCL loads and reports a device, else emulated device 0; with the reason for the
    /// choice (what was found, or why there is no NPU).
    ///
    /// # Errors
    /// Only if the emulator cannot start either (a malformed emulator configuration).
    pub fn auto() -> Result<(Device, String)> {
        let why = match runtime::libascendcl() {
            Ok(driver) => match Device::open(driver, 0) {
                Ok(device) => {
                    let reason = format!("NPU 0 through {}", driver.origin);
                    return Ok((device, reason));
                }
                Err(e) => format!(
                    "AscendCL loaded from {} but has no usable device: {e}",
                    driver.origin
                ),
            },
            Err(e) => e.to_string(),
        };
        Ok((Device::emulator()?, format!("the emulator, because {why}")))
    }

    /// How many devices `provider` has (0 NPUs if AscendCL is missing).
    ///
    /// # Errors
    /// An AscendCL error from `aclrtGetDeviceCount`, or a malformed emulator configuration.
    pub fn count(provider: Provider) -> Result<u32> {
        match provider {
            Provider::Npu => match runtime::libascendcl() {
                Ok(d) => result::device::count(d.fns()?),
                Err(Error::RuntimeMissing { .. }) => Ok(0),
                Err(e) => Err(e),
            },
            Provider::Emulator => result::device::count(runtime::emulator()?.fns()?),
        }
    }

    /// The device id within its provider.
    pub fn id(&self) -> i32 {
        self.inner.id
    }

    /// Which implementation runs this device.
    pub fn provider(&self) -> Provider {
        self.inner.driver.provider
    }

    /// Which kernels [`crate::Module::load`] loads on this device, or why there are none: the device
    /// binary on a board, the host-compiled kernels on the emulator and on `standin-acl`.
    pub fn kernel_source(&self) -> crate::runtime::KernelSource {
        self.inner.driver.kernels
    }

    /// Where the driver came from (the library path, or the built-in emulator).
    pub fn origin(&self) -> &str {
        &self.inner.driver.origin
    }

    /// Core counts, UB size and SoC name, read from the device (once, then cached).
    ///
    /// # Errors
    /// An AscendCL error from the queries.
    pub fn profile(&self) -> Result<DeviceProfile> {
        if let Some(p) = self
            .inner
            .profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(p);
        }
        let ctx = self.enter(None, "device")?;
        let id = self.inner.id as u32;
        let fns = ctx.fns;
        let vector_cores = result::device::info(fns, id, ascend_sys::ACL_DEV_ATTR_VECTOR_CORE_NUM)
            .or_else(|_| {
                result::device::capability(fns, id, ascend_sys::ACL_DEVICE_INFO_VECTOR_CORE_NUM)
            })?;
        let ai_cores = result::device::info(fns, id, ascend_sys::ACL_DEV_ATTR_AICORE_CORE_NUM)
            .or_else(|_| {
                result::device::capability(fns, id, ascend_sys::ACL_DEVICE_INFO_AI_CORE_NUM)
            })?;
        let ub_bytes =
            result::device::info(fns, id, ascend_sys::ACL_DEV_ATTR_UBUF_PER_VECTOR_CORE)?;
        let profile = DeviceProfile {
            soc_name: result::device::soc_name(fns)?,
            ai_cores: ai_cores.clamp(0, u32::MAX.into()) as u32,
            vector_cores: vector_cores.clamp(0, u32::MAX.into()) as u32,
            ub_bytes: DeviceProfile::usable_ub_bytes(ub_bytes.clamp(0, u32::MAX.into()) as u32),
        };
        *self.inner.profile.lock().unwrap_or_else(|e| e.into_inner()) = Some(profile.clone());
        Ok(profile)
    }

    /// Waits for all work queued on the device (by this process) and reports the first stream error.
    ///
    /// # Errors
    /// A sticky stream error (e.g. a kernel fault) as [`Error::Acl`] with the runtime's message.
    pub fn synchronize(&self) -> Result<()> {
        let ctx = self.enter(None, "device")?;
        result::device::synchronize(ctx.fns)
    }

    /// Waits for the device's work, then releases this crate's references to it (see the module docs).
    /// Every buffer, stream, event and module made before returns [`Error::DeviceReset`] afterwards; new
    /// ones can be made at once.
    ///
    /// # Errors
    /// The first AscendCL error met; the reset still completes as far as it can.
    pub fn reset(&self) -> Result<()> {
        let inner = &*self.inner;
        let _gate = inner.gate.write().unwrap_or_else(|e| e.into_inner());
        let fns = inner.driver.fns()?;
        let mut first = Ok(());
        let mut keep = |r: Result<()>| {
            if first.is_ok() {
                if let Err(e) = r {
                    first = Err(e);
                }
            }
        };
        // Bind this thread (it may not be yet) so the synchronisation targets this device.
        let mut calls = inner.set_calls.load(Ordering::Acquire);
        if self.bound_here() != Some(inner.generation.load(Ordering::Acquire)) {
            keep(result::device::set(fns, inner.id));
            calls += 1;
        }
        keep(result::device::synchronize(fns));
        for _ in 0..calls {
            keep(result::device::reset(fns, inner.id));
        }
        inner.set_calls.store(0, Ordering::Release);
        inner.generation.fetch_add(1, Ordering::AcqRel);
        BOUND.with(|b| b.set(None));
        first
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    fn bound_here(&self) -> Option<u64> {
        BOUND
            .with(|b| b.get())
            .and_then(|(k, g)| (k == self.key()).then_some(g))
    }

    /// The current generation (handles record it at creation).
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Enters the device on this thread: holds resets off, checks that a handle made in `generation`
    /// (`None`: not tied to one) is still valid, and binds the thread to the device if needed.
    pub(crate) fn enter(&self, generation: Option<u64>, what: &'static str) -> Result<Ctx<'_>> {
        let inner = &*self.inner;
        let gate = inner.gate.read().unwrap_or_else(|e| e.into_inner());
        let fns = inner.driver.fns()?;
        let current = inner.generation.load(Ordering::Acquire);
        if generation.is_some_and(|g| g != current) {
            return Err(Error::DeviceReset {
                what,
                device: self.to_string(),
            });
        }
        if self.bound_here() != Some(current) {
            result::device::set(fns, inner.id)?;
            inner.set_calls.fetch_add(1, Ordering::AcqRel);
            BOUND.with(|b| b.set(Some((self.key(), current))));
        }
        Ok(Ctx { fns, _gate: gate })
    }

    /// Whether a handle made in `generation` is still valid (no reset since).
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation() == generation
    }

    /// `Error::BadParameter` unless `other` is this device.
    pub(crate) fn expect_same(&self, other: &Device, what: &'static str) -> Result<()> {
        if self == other {
            Ok(())
        } else {
            Err(Error::parameter(
                what,
                format!("memory or work on {self}"),
                format!("{other}"),
            ))
        }
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Device {}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.provider(), self.id())
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({self}, {})", self.origin())
    }
}

/// A device as a command line names it: `auto` (NPU 0 when usable, else the emulator), `emu[:N]`,
/// `npu[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// See [`Device::auto`].
    Auto,
    /// Emulated device N.
    Emu(i32),
    /// NPU N.
    Npu(i32),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::parameter("device", "auto, emu, emu:N, npu or npu:N", s);
        let (kind, id) = match s.split_once(':') {
            Some((k, n)) => (k, n.trim().parse::<i32>().map_err(|_| bad())?),
            None => (s, 0),
        };
        match kind.trim() {
            "auto" if !s.contains(':') => Ok(DeviceSpec::Auto),
            "emu" | "emulator" => Ok(DeviceSpec::Emu(id)),
            "npu" => Ok(DeviceSpec::Npu(id)),
            _ => Err(bad()),
        }
    }
}

impl DeviceSpec {
    /// Opens the device, with a sentence saying which it is and why.
    ///
    /// # Errors
    /// The device's errors (e.g. [`Error::RuntimeMissing`] for an NPU without AscendCL).
    pub fn open(self) -> Result<(Device, String)> {
        match self {
            DeviceSpec::Auto => Device::auto(),
            DeviceSpec::Emu(id) => Ok((
                Device::emulator_device(id)?,
                format!("the AscendCL emulator (device {id})"),
            )),
            DeviceSpec::Npu(id) => Ok((Device::npu(id)?, format!("NPU {id}"))),
        }
    }
}
