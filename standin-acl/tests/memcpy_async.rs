//! `aclrtMemcpyAsync` with page-locked versus pageable host memory.
//!
//! hicann/runtime `docs/zh/api_ref/11-03_memory_copy_and_set.md`, section aclrtMemcpyAsync: the host side
//! may be page-locked memory (e.g. from `aclrtMallocHost`) or pageable memory (from `malloc`). With
//! page-locked memory the call is asynchronous: success only means the task was issued, and the caller
//! must synchronise (e.g. `aclrtSynchronizeStream`) before relying on the copy. With pageable memory the
//! call returns only after the copy has completed, so the source may be reused at once and the
//! destination read at once.
//!
//! To see the difference, each copy is queued behind a backlog of large device-to-device copies on the
//! same stream (tens of milliseconds of work), so that "the call returned before the copy ran" is
//! observable. The pinned test retries with a longer backlog if the host thread was descheduled for the
//! whole backlog (the only way an asynchronous copy can look synchronous).

mod common;

use ascend_sys::*;
use common::*;
use std::os::raw::c_void;

const N: usize = 4096;
const BIG: usize = 16 << 20;

fn pattern(seed: u8) -> Vec<u8> {
    (0..N)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Two large device buffers for the backlog.
struct Backlog {
    a: *mut c_void,
    b: *mut c_void,
}

impl Backlog {
    fn new() -> Self {
        Backlog {
            a: malloc(BIG),
            b: malloc(BIG),
        }
    }

    /// Queues `copies` device-to-device copies of BIG bytes on `stream`.
    fn queue(&self, stream: aclrtStream, copies: usize) {
        for i in 0..copies {
            let (dst, src) = if i % 2 == 0 {
                (self.b, self.a)
            } else {
                (self.a, self.b)
            };
            // SAFETY: both are live device allocations of BIG bytes on the stream's device.
            let code = unsafe {
                (f().aclrtMemcpyAsync)(dst, BIG, src, BIG, ACL_MEMCPY_DEVICE_TO_DEVICE, stream)
            };
            check(code, "aclrtMemcpyAsync D2D (backlog)");
        }
    }

    fn free(self) {
        free(self.a);
        free(self.b);
    }
}

/// Reads N bytes at `at` with volatile reads: a stream's copy writes such memory behind the compiler's
/// back, as a DMA engine would. A read overlaps such a copy only if the copy runs during it, which is
/// the timing this file's tests exist to catch (it then shows as a failed comparison; any byte is valid).
///
/// # Safety
/// `at` is valid for N bytes of reads.
unsafe fn read_n(at: *const u8) -> Vec<u8> {
    // SAFETY: within the N readable bytes (caller).
    (0..N)
        .map(|i| unsafe { std::ptr::read_volatile(at.add(i)) })
        .collect()
}

/// Writes `bytes` (N of them) at `at` with volatile writes; see [`read_n`].
///
/// # Safety
/// `at` is valid for N bytes of writes.
unsafe fn write_n(at: *mut u8, bytes: &[u8]) {
    assert_eq!(bytes.len(), N);
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: within the N writable bytes (caller).
        unsafe { std::ptr::write_volatile(at.add(i), b) };
    }
}

/// One aclrtMallocHost block of two N-byte halves (pointers inside the block are page-locked too).
/// Accessed through raw pointers and volatile reads and writes only (see [`read_n`]).
struct PinnedBlock {
    /// Invariant: a live aclrtMallocHost block of 2N bytes until `free`.
    base: *mut u8,
}

impl PinnedBlock {
    fn new() -> Self {
        PinnedBlock {
            base: malloc_host(2 * N),
        }
    }

    fn ptr(&self, half: usize) -> *mut c_void {
        assert!(half < 2);
        // SAFETY: within the 2N-byte block (invariant).
        unsafe { self.base.add(half * N) }.cast()
    }

    fn read(&self, half: usize) -> Vec<u8> {
        // SAFETY: the half is N bytes inside the live block (invariant).
        unsafe { read_n(self.ptr(half).cast()) }
    }

    fn write(&self, half: usize, bytes: &[u8]) {
        // SAFETY: as in `read`.
        unsafe { write_n(self.ptr(half).cast(), bytes) }
    }

    fn free(self) {
        free_host(self.base);
    }
}

/// Queues a copy of N bytes.
fn copy_async(
    dst: *mut c_void,
    src: *const c_void,
    kind: aclrtMemcpyKind,
    stream: aclrtStream,
    what: &str,
) {
    // SAFETY: callers pass N-byte host buffers that stay alive (and, for page-locked memory, untouched
    // except where the test means to) until the stream is synchronised; device pointers are checked.
    let code = unsafe { (f().aclrtMemcpyAsync)(dst, N, src, N, kind, stream) };
    check(code, what);
}

#[test]
fn from_pageable_memory_the_call_returns_after_the_copy() {
    set_device(0);
    let stream = create_stream();
    let backlog = Backlog::new();
    let small = malloc(N);
    let earlier = malloc(N);
    h2d(earlier, &pattern(1));

    // Stream order: backlog, then `earlier` -> `small`, then the pageable copies.
    backlog.queue(stream, 16);
    copy_async(
        small,
        earlier,
        ACL_MEMCPY_DEVICE_TO_DEVICE,
        stream,
        "aclrtMemcpyAsync D2D",
    );
    let mut source = pattern(2);
    copy_async(
        small,
        source.as_ptr().cast(),
        ACL_MEMCPY_HOST_TO_DEVICE,
        stream,
        "aclrtMemcpyAsync H2D from pageable memory",
    );
    // The copy is complete: the source may be reused at once.
    // SAFETY: `source` holds N bytes.
    unsafe { write_n(source.as_mut_ptr(), &[0xEE; N]) };
    let mut destination = vec![0u8; N];
    copy_async(
        destination.as_mut_ptr().cast(),
        small,
        ACL_MEMCPY_DEVICE_TO_HOST,
        stream,
        "aclrtMemcpyAsync D2H into pageable memory",
    );
    // No synchronisation: the data must already be there, and everything queued before it done.
    // SAFETY: `destination` holds N bytes.
    let immediate = unsafe { read_n(destination.as_ptr()) };
    let status = stream_status(stream);
    // Before any assertion, so that a wrongly asynchronous copy cannot outlive the buffers it uses.
    sync(stream);
    assert!(
        immediate == pattern(2),
        "aclrtMemcpyAsync D2H into pageable memory returned before the copy completed \
         (or the H2D from pageable memory read its source after the call returned)"
    );
    assert_eq!(
        status, ACL_STREAM_STATUS_COMPLETE,
        "a pageable copy completed, so must every task queued before it"
    );

    // The pageable copies kept their place in the stream's order.
    let mut back = vec![0u8; N];
    d2h(&mut back, small);
    assert!(
        back == pattern(2),
        "the pageable H2D ran before the D2D queued ahead of it"
    );

    free(small);
    free(earlier);
    backlog.free();
    destroy_stream(stream);
}

#[test]
fn from_page_locked_memory_the_call_is_asynchronous() {
    set_device(0);
    let stream = create_stream();
    let backlog = Backlog::new();
    let small = malloc(N);
    let pinned = PinnedBlock::new();
    let (destination, source) = (0, 1);

    let mut observations = Vec::new();
    for attempt in 0..3 {
        h2d(small, &pattern(2));
        pinned.write(destination, &[0xEE; N]);
        backlog.queue(stream, 16 << attempt);
        copy_async(
            pinned.ptr(destination),
            small,
            ACL_MEMCPY_DEVICE_TO_HOST,
            stream,
            "aclrtMemcpyAsync D2H into page-locked memory",
        );
        let untouched = pinned.read(destination).iter().all(|&b| b == 0xEE);
        let not_ready = stream_status(stream) == ACL_STREAM_STATUS_NOT_READY;
        pinned.write(source, &pattern(3));
        copy_async(
            small,
            pinned.ptr(source),
            ACL_MEMCPY_HOST_TO_DEVICE,
            stream,
            "aclrtMemcpyAsync H2D from page-locked memory",
        );
        // Asynchronous: the copy has not read its source yet, so it must see this.
        pinned.write(source, &pattern(4));
        // The copies still run, in order, once the stream gets to them.
        sync(stream);
        assert!(
            pinned.read(destination) == pattern(2),
            "the page-locked D2H did not deliver its data by aclrtSynchronizeStream"
        );
        let mut back = vec![0u8; N];
        d2h(&mut back, small);
        let late_source_seen = back == pattern(4);
        assert!(
            late_source_seen || back == pattern(3),
            "the page-locked H2D delivered neither the source at the call nor the later one"
        );
        observations.push((untouched, not_ready, late_source_seen));
        if untouched && not_ready && late_source_seen {
            break;
        }
    }
    let (untouched, not_ready, late) = *observations.last().unwrap();
    assert!(
        untouched && not_ready && late,
        "aclrtMemcpyAsync with aclrtMallocHost memory behaved synchronously behind a backlog of up to \
         64 x 16 MiB device copies; per attempt (D2H destination untouched right after the call, \
         aclrtStreamQuery NOT_READY, H2D read the source after the call): {observations:?}"
    );

    pinned.free();
    free(small);
    backlog.free();
    destroy_stream(stream);
}
