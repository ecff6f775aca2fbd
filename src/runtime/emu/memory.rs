//! Device memory: an allocation table over host memory, bounds-checked copies.
//!
//! AscendCL facts modelled (hicann/runtime `docs/zh/api_ref/11-01_device_memory_malloc_and_free.md`,
//! `11-03_memory_copy_and_set.md`): `aclrtMalloc` rejects size 0, returns a 64-byte aligned address and
//! reserves the size rounded up to 32 bytes plus 32 bytes (910B); it does not initialise the memory (the
//! emulator fills it with 0xFF so a read before a write shows up as NaN / -1). `aclrtFree` releases at
//! once, without synchronising any stream. `aclrtMemcpy` copies at once without synchronising any
//! stream; the runtime checks from the pointers whether the copy is possible. `aclrtMemcpyAsync` is
//! asynchronous when its host side is page-locked (`aclrtMallocHost`) and returns only after the copy
//! when it is pageable (ordinary host memory), as documented there; host-to-host kinds are rejected
//! on a stream.
//!
//! Freed device memory is quarantined (held back from the host allocator, up to 256 MiB): any copy,
//! memset or kernel argument naming it is refused as a use after free, whatever the memcpy kind, and
//! the host never reuses its addresses meanwhile.
//!
//! Bounds use the requested size, not the padded one: stricter than the board, which would not fault on
//! an overrun into the padding.
#![allow(non_snake_case)]

use super::*;
use ascend_sys::{aclrtMemMallocPolicy, aclrtMemcpyKind, aclrtStream};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::os::raw::c_void;

/// Alignment of every allocation's base address.
const BASE_ALIGN: usize = 64;

/// Freed device memory is held back from the host allocator up to this many bytes (oldest released
/// first), as AddressSanitizer's quarantine does, so that a freed device pointer stays recognisable:
/// a copy from or to it is refused instead of touching memory the host may have reused or unmapped.
const QUARANTINE_BYTES: usize = 256 << 20;

pub(super) struct Allocation {
    len: usize,
    layout: Layout,
    device: u32,
}

#[derive(Default)]
pub(super) struct MemTable {
    allocs: BTreeMap<usize, Allocation>,
    used: HashMap<u32, u64>,
    /// Page-locked host allocations (`aclrtMallocHost`): base to layout.
    pinned: BTreeMap<usize, Layout>,
    /// Freed device allocations not yet given back to the host allocator: base to (layout, device).
    quarantine: BTreeMap<usize, (Layout, u32)>,
    /// Quarantined bases, oldest first, and their total size.
    quarantine_order: VecDeque<usize>,
    quarantine_bytes: usize,
    /// Per device, its allocations as GM regions ([`Self::regions`]), built once per change of
    /// `allocs`: every launch needs them, and a model holds hundreds of allocations.
    regions: Mutex<HashMap<u32, Arc<[crate::kernels::EmuGmRegion]>>>,
}

/// Where a byte range lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Host,
    Device(u32),
}

impl MemTable {
    /// Classifies `[ptr, ptr + count)`: wholly inside one allocation, wholly outside every allocation,
    /// or (an error) starting in one and running past its end.
    fn locate(&self, ptr: usize, count: usize, what: &str) -> Result<Loc, Fault> {
        if let Some((&base, (layout, device))) = self.quarantine.range(..=ptr).next_back() {
            if ptr - base < layout.size() {
                return Err((
                    ACL_ERROR_RT_PARAM_INVALID,
                    format!(
                        "{what}: {ptr:#x} is in device memory of device {device} that was freed \
                         (aclrtFree or a device reset): use after free"
                    ),
                ));
            }
        }
        if let Some((&base, a)) = self.allocs.range(..=ptr).next_back() {
            let offset = ptr - base;
            if offset < a.layout.size() {
                return if offset <= a.len && count <= a.len - offset {
                    Ok(Loc::Device(a.device))
                } else {
                    Err((
                        ACL_ERROR_RT_PARAM_INVALID,
                        format!(
                            "{what}: {count} bytes at offset {offset} of a {}-byte device allocation on device {} run past its end",
                            a.len, a.device
                        ),
                    ))
                };
            }
        }
        if let Some((&base, a)) = self.allocs.range(ptr.saturating_add(1)..).next() {
            if count > base - ptr {
                return Err((
                    ACL_ERROR_RT_PARAM_INVALID,
                    format!(
                        "{what}: {count} bytes starting outside device memory run into a {}-byte allocation on device {}",
                        a.len, a.device
                    ),
                ));
            }
        }
        Ok(Loc::Host)
    }

    /// Puts a device allocation just removed from `allocs` into quarantine, giving the oldest
    /// quarantined ones back to the host allocator beyond [`QUARANTINE_BYTES`].
    fn retire(&mut self, base: usize, layout: Layout, device: u32) {
        self.quarantine.insert(base, (layout, device));
        self.quarantine_order.push_back(base);
        self.quarantine_bytes += layout.size();
        while self.quarantine_bytes > QUARANTINE_BYTES {
            let Some(oldest) = self.quarantine_order.pop_front() else {
                break;
            };
            if let Some((layout, _)) = self.quarantine.remove(&oldest) {
                self.quarantine_bytes -= layout.size();
                // SAFETY: `oldest` was returned by `alloc` with this layout; it left `allocs` when it was
                // freed and leaves the quarantine here, so it is deallocated exactly once.
                unsafe { std::alloc::dealloc(oldest as *mut u8, layout) };
            }
        }
    }

    /// Whether `[ptr, ptr + count)` lies in one page-locked host allocation.
    fn is_pinned(&self, ptr: usize, count: usize) -> bool {
        self.pinned
            .range(..=ptr)
            .next_back()
            .is_some_and(|(&base, layout)| {
                ptr - base <= layout.size() && count <= layout.size() - (ptr - base)
            })
    }

    /// Whether `[ptr, ptr + count)` is wholly outside device memory.
    pub(super) fn is_host_memory(&self, ptr: usize, count: usize) -> bool {
        matches!(self.locate(ptr, count, ""), Ok(Loc::Host))
    }

    /// Whether `[ptr, ptr + count)` lies in a live device allocation of `device`.
    pub(super) fn is_device_memory(&self, ptr: usize, count: usize, device: u32) -> bool {
        matches!(self.locate(ptr, count, ""), Ok(Loc::Device(d)) if d == device)
    }

    /// The device allocations of `device` as GM regions, sorted by base.
    pub(super) fn regions(&self, device: u32) -> Arc<[crate::kernels::EmuGmRegion]> {
        let allocs = &self.allocs;
        Arc::clone(lock(&self.regions).entry(device).or_insert_with(|| {
            allocs
                .iter()
                .filter(|(_, a)| a.device == device)
                .map(|(&base, a)| crate::kernels::EmuGmRegion { base, len: a.len })
                .collect()
        }))
    }

    fn regions_mut(&mut self) -> &mut HashMap<u32, Arc<[crate::kernels::EmuGmRegion]>> {
        self.regions.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn insert_alloc(&mut self, base: usize, allocation: Allocation) {
        self.regions_mut().remove(&allocation.device);
        self.allocs.insert(base, allocation);
    }

    fn remove_alloc(&mut self, base: usize) -> Option<Allocation> {
        let allocation = self.allocs.remove(&base)?;
        self.regions_mut().remove(&allocation.device);
        Some(allocation)
    }

    /// Frees every allocation of `device`; returns how many there were.
    pub(super) fn release_device(&mut self, device: u32) -> u64 {
        let bases: Vec<usize> = self
            .allocs
            .iter()
            .filter(|(_, a)| a.device == device)
            .map(|(&b, _)| b)
            .collect();
        for base in &bases {
            if let Some(a) = self.remove_alloc(*base) {
                self.retire(*base, a.layout, device);
            }
        }
        self.used.remove(&device);
        bases.len() as u64
    }

    #[allow(clippy::too_many_arguments)] // the C call's parameters, plus the context's device and a flag
    /// Validates a copy of `count` bytes of `kind` whose device side must be on `device`, and performs it
    /// if `perform`. The caller holds the table for reading, so no allocation can vanish meanwhile,
    /// and to perform, the turn to touch device bytes ([`bytes_access`]).
    pub(super) fn copy(
        &self,
        dst: usize,
        dst_max: usize,
        src: usize,
        count: usize,
        kind: aclrtMemcpyKind,
        device: u32,
        perform: bool,
    ) -> Result<(), Fault> {
        if dst == 0 || src == 0 {
            return Err((ACL_ERROR_INVALID_PARAM, "dst or src is null".into()));
        }
        if count > dst_max {
            return Err((
                ACL_ERROR_INVALID_PARAM,
                format!("count {count} exceeds destMax {dst_max}"),
            ));
        }
        let d = self.locate(dst, count, "memcpy destination")?;
        let s = self.locate(src, count, "memcpy source")?;
        let (want_d, want_s) = match kind {
            ascend_sys::ACL_MEMCPY_HOST_TO_HOST => (Loc::Host, Loc::Host),
            ascend_sys::ACL_MEMCPY_HOST_TO_DEVICE => (Loc::Device(device), Loc::Host),
            ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST => (Loc::Host, Loc::Device(device)),
            ascend_sys::ACL_MEMCPY_DEVICE_TO_DEVICE => (Loc::Device(device), Loc::Device(device)),
            _ => {
                return Err((
                    ACL_ERROR_INVALID_PARAM,
                    format!("memcpy kind {kind} is not one of ACL_MEMCPY_HOST_TO_HOST..=ACL_MEMCPY_DEVICE_TO_DEVICE"),
                ))
            }
        };
        let describe = |l: Loc| match l {
            Loc::Host => "host memory".to_string(),
            Loc::Device(d) => format!("device {d} memory"),
        };
        for (side, addr, got, want) in [("dst", dst, d, want_d), ("src", src, s, want_s)] {
            let problem = match (got, want) {
                (g, w) if g == w => continue,
                (Loc::Host, Loc::Device(w)) => format!(
                    "{side} {addr:#x} is not device memory of device {w}: not from aclrtMalloc (or \
                     freed so long ago that the emulator forgot it), or a host pointer"
                ),
                (g, w) => format!(
                    "{side} {addr:#x} is in {}, expected {}",
                    describe(g),
                    describe(w)
                ),
            };
            return Err((
                ACL_ERROR_RT_PARAM_INVALID,
                format!("memcpy kind {kind} (context on device {device}): {problem}"),
            ));
        }
        if perform && count > 0 {
            // SAFETY: device ranges were checked against live allocations above (the table is held,
            // and the device-bytes turn: this method's contract); host ranges are the caller's
            // contract, as in C. `copy` allows overlap.
            unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, count) };
        }
        Ok(())
    }
}

/// `bytes` (> 0) of host memory aligned like the runtime's allocations, filled with 0xFF so that a
/// read before a write shows up (AscendCL does not initialise memory); `what` names it in the error.
fn poisoned_alloc(bytes: usize, what: &str) -> Result<(*mut u8, Layout), aclError> {
    let Ok(layout) = Layout::from_size_align(bytes, BASE_ALIGN) else {
        return Err(fail(
            ACL_ERROR_RT_MEMORY_ALLOCATION,
            format!("cannot lay out {bytes} bytes of {what}"),
        ));
    };
    // SAFETY: the layout has non-zero size (callers refuse size 0).
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        return Err(fail(
            ACL_ERROR_RT_MEMORY_ALLOCATION,
            format!("the host cannot back {bytes} bytes of {what}"),
        ));
    }
    // SAFETY: `ptr` is a fresh allocation of `bytes` bytes.
    unsafe { std::ptr::write_bytes(ptr, 0xFF, bytes) };
    Ok((ptr, layout))
}

pub(super) unsafe extern "C" fn aclrtMalloc(
    dev_ptr: *mut *mut c_void,
    size: usize,
    _policy: aclrtMemMallocPolicy,
) -> aclError {
    entry("aclrtMalloc", || {
        if dev_ptr.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "devPtr is null");
        }
        if size == 0 {
            return fail(ACL_ERROR_INVALID_PARAM, "size must not be 0");
        }
        let dev = match current_device() {
            Ok(d) => d,
            Err(code) => return code,
        };
        let emu = emu();
        let capacity = emu.config.hbm_bytes;
        // 910B: the size rounded up to 32 bytes, plus 32 bytes.
        let padded = match size.checked_add(31).map(|s| (s & !31) + 32) {
            Some(p) if (p as u64) <= capacity => p,
            _ => {
                return fail(
                    ACL_ERROR_RT_MEMORY_ALLOCATION,
                    format!(
                        "out of device memory: {size} bytes requested, device capacity {capacity}"
                    ),
                )
            }
        };
        let mut table = alloc_table_mut();
        let used = table.used.get(&dev).copied().unwrap_or(0);
        if used + padded as u64 > capacity {
            return fail(
                ACL_ERROR_RT_MEMORY_ALLOCATION,
                format!(
                    "out of device memory: {size} bytes requested, {} of {capacity} free",
                    capacity - used
                ),
            );
        }
        let (ptr, layout) = match poisoned_alloc(padded, "emulated device memory") {
            Ok(p) => p,
            Err(code) => return code,
        };
        table.insert_alloc(
            ptr as usize,
            Allocation {
                len: size,
                layout,
                device: dev,
            },
        );
        *table.used.entry(dev).or_insert(0) += padded as u64;
        drop(table);
        let mut stats = lock(&emu.devices[dev as usize].stats);
        stats.live_allocations += 1;
        stats.live_bytes += padded as u64;
        stats.total_allocs += 1;
        // SAFETY: dev_ptr is non-null and writable (C contract).
        unsafe { *dev_ptr = ptr.cast() };
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtFree(dev_ptr: *mut c_void) -> aclError {
    entry("aclrtFree", || {
        if dev_ptr.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "devPtr is null");
        }
        let emu = emu();
        // Taking the table for writing waits for any kernel or copy that is touching device memory.
        let mut table = alloc_table_mut();
        let Some(a) = table.remove_alloc(dev_ptr as usize) else {
            return fail(
                ACL_ERROR_RT_MEMORY_FREE,
                format!("{dev_ptr:p} is not the base of a live device allocation (double free, or not from aclrtMalloc)"),
            );
        };
        if let Some(u) = table.used.get_mut(&a.device) {
            *u -= a.layout.size() as u64;
        }
        table.retire(dev_ptr as usize, a.layout, a.device);
        drop(table);
        let mut stats = lock(&emu.devices[a.device as usize].stats);
        stats.live_allocations -= 1;
        stats.live_bytes -= a.layout.size() as u64;
        stats.total_frees += 1;
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtMemset(
    dev_ptr: *mut c_void,
    max_count: usize,
    value: i32,
    count: usize,
) -> aclError {
    entry("aclrtMemset", || {
        if dev_ptr.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "devPtr is null");
        }
        if count > max_count {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                format!("count {count} exceeds maxCount {max_count}"),
            );
        }
        let dev = match current_device() {
            Ok(d) => d,
            Err(code) => return code,
        };
        let table = bytes_access();
        match table.locate(dev_ptr as usize, count, "memset") {
            Ok(Loc::Device(d)) if d == dev => {
                // SAFETY: the range lies in a live allocation; the table and the device-bytes turn
                // are held.
                unsafe { std::ptr::write_bytes(dev_ptr.cast::<u8>(), value as u8, count) };
                ACL_SUCCESS
            }
            Ok(_) => fail(
                ACL_ERROR_RT_PARAM_INVALID,
                format!(
                    "memset target {dev_ptr:p} is not device memory of the current device {dev}"
                ),
            ),
            Err((code, message)) => fail(code, message),
        }
    })
}

pub(super) unsafe extern "C" fn aclrtMemcpy(
    dst: *mut c_void,
    dest_max: usize,
    src: *const c_void,
    count: usize,
    kind: aclrtMemcpyKind,
) -> aclError {
    entry("aclrtMemcpy", || {
        let dev = match current_device() {
            Ok(d) => d,
            Err(code) => return code,
        };
        let table = bytes_access();
        match table.copy(dst as usize, dest_max, src as usize, count, kind, dev, true) {
            Ok(()) => {
                count_copy(dev, kind);
                ACL_SUCCESS
            }
            Err((code, message)) => fail(code, message),
        }
    })
}

pub(super) unsafe extern "C" fn aclrtMemcpyAsync(
    dst: *mut c_void,
    dest_max: usize,
    src: *const c_void,
    count: usize,
    kind: aclrtMemcpyKind,
    stream: aclrtStream,
) -> aclError {
    entry("aclrtMemcpyAsync", || {
        if kind == ascend_sys::ACL_MEMCPY_HOST_TO_HOST {
            return fail(
                ACL_ERROR_RT_FEATURE_NOT_SUPPORT,
                "aclrtMemcpyAsync does not copy host to host",
            );
        }
        let stream = match stream::resolve(stream) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let dev = stream.device;
        let (dst, src) = (dst as usize, src as usize);
        // Check now, so misuse fails at the call; check again when the copy runs (memory may be gone).
        if let Err((code, message)) =
            alloc_table().copy(dst, dest_max, src, count, kind, dev, false)
        {
            return fail(code, message);
        }
        let host_side = match kind {
            ascend_sys::ACL_MEMCPY_HOST_TO_DEVICE => Some(src),
            ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST => Some(dst),
            _ => None,
        };
        let pageable = host_side.is_some_and(|p| !alloc_table().is_pinned(p, count));
        let ticket = stream.submit(Box::new(move || {
            bytes_access().copy(dst, dest_max, src, count, kind, dev, true)
        }));
        count_copy(dev, kind);
        if pageable {
            tally(dev, |s| s.host_waits += 1);
            if let Err((code, message)) = stream.wait(ticket) {
                return fail(code, message);
            }
        }
        ACL_SUCCESS
    })
}

/// Page-locked host memory: host memory (copies treat it as such), remembered so that
/// `aclrtMemcpyAsync` from or to it stays asynchronous. Zero-filled is not promised by AscendCL; the
/// emulator fills it with 0xFF like device memory.
pub(super) unsafe extern "C" fn aclrtMallocHost(
    host_ptr: *mut *mut c_void,
    size: usize,
) -> aclError {
    entry("aclrtMallocHost", || {
        if host_ptr.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "hostPtr is null");
        }
        if size == 0 {
            return fail(ACL_ERROR_INVALID_PARAM, "size must not be 0");
        }
        let (ptr, layout) = match poisoned_alloc(size, "page-locked memory") {
            Ok(p) => p,
            Err(code) => return code,
        };
        alloc_table_mut().pinned.insert(ptr as usize, layout);
        // SAFETY: non-null and writable (C contract).
        unsafe { *host_ptr = ptr.cast() };
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtFreeHost(host_ptr: *mut c_void) -> aclError {
    entry("aclrtFreeHost", || {
        if host_ptr.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "hostPtr is null");
        }
        // Taking the table for writing waits for a copy that is reading or writing it right now.
        let Some(layout) = alloc_table_mut().pinned.remove(&(host_ptr as usize)) else {
            return fail(
                ACL_ERROR_RT_MEMORY_FREE,
                format!("{host_ptr:p} is not the base of live aclrtMallocHost memory (double free, or not from aclrtMallocHost)"),
            );
        };
        // SAFETY: removed from the table, so this is its only deallocation; allocated with `layout`.
        unsafe { std::alloc::dealloc(host_ptr.cast(), layout) };
        ACL_SUCCESS
    })
}
