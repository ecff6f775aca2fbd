//! Events: a record is a task on a stream that stamps the host clock when the stream reaches it.
//!
//! `aclrtSynchronizeEvent` waits for the records issued before the call; an event never recorded is
//! complete. `aclrtStreamWaitEvent` queues a task that blocks its stream until the records issued before
//! the call have completed. `aclrtEventElapsedTime` needs both events completed
//! (`ACL_ERROR_RT_EVENT_TIMESTAMP_INVALID` otherwise) and the end not before the start
//! (`ACL_ERROR_RT_EVENT_TIMESTAMP_REVERSAL`).
#![allow(non_snake_case)]

use super::*;
use ascend_sys::{aclrtEvent, aclrtStream};
use std::sync::Condvar;
use std::time::Instant;

#[derive(Default)]
struct Marks {
    /// Records issued.
    issued: u64,
    /// Records completed (in issue order per stream).
    done: u64,
    /// Host time of the latest completed record.
    stamp: Option<Instant>,
    /// The device was reset: nobody may wait on this event any more.
    dead: bool,
    /// Records issued and not yet reached: (record number, its stream, its ticket there), so that a
    /// waiter can run the stream's tasks up to it when nobody else does (stream.rs, "helps").
    pending: Vec<(u64, std::sync::Weak<stream::EmuStream>, u64)>,
}

pub(super) struct EmuEvent {
    pub(super) device: u32,
    marks: Mutex<Marks>,
    changed: Condvar,
}

impl EmuEvent {
    /// Waits until record `target` (and those before it) has been reached, running the tasks ahead
    /// of it on its stream when nobody else does. The stream's sticky fault if the record sits
    /// behind it (a skipped record is never reached); a record that `aclrtDestroyStreamForce`
    /// dropped will never be reached either, and ends the wait.
    fn wait_for(&self, target: u64) -> Result<(), Fault> {
        let mut m = lock(&self.marks);
        while m.done < target && !m.dead {
            let record = m.pending.iter().find(|(n, _, _)| *n == target);
            match record.and_then(|(_, s, ticket)| Some((s.upgrade()?, *ticket))) {
                Some((stream, ticket)) => {
                    drop(m);
                    let ran = stream.wait(ticket);
                    m = lock(&self.marks);
                    if m.done >= target {
                        break; // reached; a fault after it is not this record's
                    }
                    ran?;
                    // The stream is past the record's ticket and the record did not run: dropped.
                    m.pending.retain(|(n, _, _)| *n != target);
                    return Ok(());
                }
                // Not listed yet (its issuer is between queueing and listing it), or its stream is
                // gone: the record's completion, or the listing, signals.
                None => m = self.changed.wait(m).unwrap_or_else(|e| e.into_inner()),
            }
        }
        Ok(())
    }

    pub(super) fn kill(&self) {
        lock(&self.marks).dead = true;
        self.changed.notify_all();
    }
}

fn lookup(event: aclrtEvent) -> Result<Arc<EmuEvent>, aclError> {
    if event.is_null() {
        return Err(fail(ACL_ERROR_INVALID_PARAM, "event is null"));
    }
    lock(&emu().objects)
        .events
        .get(&(event as usize))
        .cloned()
        .ok_or_else(|| {
            fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("event {event:p} does not exist (destroyed, or its device was reset)"),
            )
        })
}

pub(super) unsafe extern "C" fn aclrtCreateEvent(event: *mut aclrtEvent) -> aclError {
    entry("aclrtCreateEvent", || {
        if event.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "event is null");
        }
        let dev = match current_device() {
            Ok(d) => d,
            Err(code) => return code,
        };
        let emu = emu();
        let handle = emu.handle();
        let e = Arc::new(EmuEvent {
            device: dev,
            marks: Mutex::default(),
            changed: Condvar::new(),
        });
        lock(&emu.objects).events.insert(handle, e);
        // SAFETY: non-null and writable (C contract).
        unsafe { *event = handle as aclrtEvent };
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtDestroyEvent(event: aclrtEvent) -> aclError {
    entry("aclrtDestroyEvent", || {
        match lock(&emu().objects).events.remove(&(event as usize)) {
            // Tasks already queued keep their own reference: a pending record or wait still completes.
            Some(_) => ACL_SUCCESS,
            None => fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("event {event:p} does not exist (destroyed, or its device was reset)"),
            ),
        }
    })
}

pub(super) unsafe extern "C" fn aclrtRecordEvent(
    event: aclrtEvent,
    stream: aclrtStream,
) -> aclError {
    entry("aclrtRecordEvent", || {
        let (e, s) = match (lookup(event), stream::resolve(stream)) {
            (Ok(e), Ok(s)) => (e, s),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        if e.device != s.device {
            return fail(
                ACL_ERROR_RT_STREAM_CONTEXT,
                format!(
                    "event of device {} recorded on a stream of device {}",
                    e.device, s.device
                ),
            );
        }
        let target = {
            let mut m = lock(&e.marks);
            m.issued += 1;
            m.issued
        };
        let reached = Arc::clone(&e);
        let ticket = s.submit(Box::new(move || {
            let mut m = lock(&reached.marks);
            m.done = m.done.max(target);
            m.stamp = Some(Instant::now());
            let done = m.done;
            m.pending.retain(|(n, _, _)| *n > done);
            reached.changed.notify_all();
            Ok(())
        }));
        let mut m = lock(&e.marks);
        if m.done < target {
            m.pending.push((target, Arc::downgrade(&s), ticket));
            e.changed.notify_all();
        }
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtSynchronizeEvent(event: aclrtEvent) -> aclError {
    entry("aclrtSynchronizeEvent", || match lookup(event) {
        Ok(e) => {
            tally(e.device, |s| s.host_waits += 1);
            let target = lock(&e.marks).issued;
            match e.wait_for(target) {
                Ok(()) => ACL_SUCCESS,
                Err((code, message)) => fail(code, message),
            }
        }
        Err(code) => code,
    })
}

/// Complete when every record issued before the call has been reached (an event never recorded is
/// complete, as for aclrtSynchronizeEvent).
pub(super) unsafe extern "C" fn aclrtQueryEventStatus(
    event: aclrtEvent,
    status: *mut ascend_sys::aclrtEventRecordedStatus,
) -> aclError {
    entry("aclrtQueryEventStatus", || {
        if status.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "status is null");
        }
        match lookup(event) {
            Ok(e) => {
                let m = lock(&e.marks);
                let value = if m.done >= m.issued {
                    ascend_sys::ACL_EVENT_RECORDED_STATUS_COMPLETE
                } else {
                    ascend_sys::ACL_EVENT_RECORDED_STATUS_NOT_READY
                };
                // SAFETY: non-null and writable (C contract).
                unsafe { *status = value };
                ACL_SUCCESS
            }
            Err(code) => code,
        }
    })
}

pub(super) unsafe extern "C" fn aclrtStreamWaitEvent(
    stream: aclrtStream,
    event: aclrtEvent,
) -> aclError {
    entry("aclrtStreamWaitEvent", || {
        let (s, e) = match (stream::resolve(stream), lookup(event)) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        let target = lock(&e.marks).issued;
        s.submit(Box::new(move || {
            // A fault on the recording stream is that stream's to report; this one goes on.
            let _ = e.wait_for(target);
            Ok(())
        }));
        ACL_SUCCESS
    })
}

pub(super) unsafe extern "C" fn aclrtEventElapsedTime(
    ms: *mut f32,
    start: aclrtEvent,
    end: aclrtEvent,
) -> aclError {
    entry("aclrtEventElapsedTime", || {
        if ms.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "ms is null");
        }
        let (a, b) = match (lookup(start), lookup(end)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        let stamp = |e: &EmuEvent| {
            let m = lock(&e.marks);
            (m.issued > 0 && m.done == m.issued)
                .then_some(m.stamp)
                .flatten()
        };
        let (Some(t0), Some(t1)) = (stamp(&a), stamp(&b)) else {
            return fail(
                ACL_ERROR_RT_EVENT_TIMESTAMP_INVALID,
                "both events must be recorded and completed before their elapsed time is read",
            );
        };
        if t1 < t0 {
            return fail(
                ACL_ERROR_RT_EVENT_TIMESTAMP_REVERSAL,
                "the end event completed before the start event",
            );
        }
        // SAFETY: non-null and writable (C contract).
        unsafe { *ms = ((t1 - t0).as_secs_f64() * 1000.0) as f32 };
        ACL_SUCCESS
    })
}
