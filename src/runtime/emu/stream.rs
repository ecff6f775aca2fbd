//! Streams: one worker thread per stream runs its tasks in order, asynchronously to the host, as a
//! board's stream does: a launch returns before its kernel runs, even a kernel of a microsecond, so
//! host code that reads a result without waiting for it fails here as it would there, and the host
//! can compute while the stream works (docs/DECODING.md, "third round").
//!
//! A failed task (a kernel fault, a copy whose memory vanished) makes the stream's error sticky: later
//! tasks on it are skipped and every synchronisation reports the first fault, with its message, as on a
//! board where an AI core exception poisons the stream.
#![allow(non_snake_case)]

use super::*;
use ascend_sys::aclrtStream;
use std::sync::Condvar;
use std::thread::JoinHandle;

type Task = Box<dyn FnOnce() -> Result<(), Fault> + Send>;

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    submitted: u64,
    completed: u64,
    fault: Option<Fault>,
    shutdown: bool,
    /// The worker waits on `work` for a task: a submit must wake it.
    worker_waiting: bool,
    /// Host threads waiting on `done` for tasks to complete: a completion must wake them.
    hosts_waiting: usize,
}

pub(super) struct EmuStream {
    pub(super) device: u32,
    queue: Mutex<Queue>,
    /// Signalled when a task is queued or the stream shuts down (the worker waits on it).
    work: Condvar,
    /// Signalled when tasks complete (hosts wait on it). Two condvars, each notified only when someone
    /// waits on it: a futex wake per launch and per completion cost more than the small kernels of a
    /// decode step (docs/DECODING.md, "third round").
    done: Condvar,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl EmuStream {
    fn spawn(device: u32, handle: usize) -> Result<Arc<Self>, aclError> {
        let stream = Arc::new(EmuStream {
            device,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            worker: Mutex::new(None),
        });
        let worker = Arc::clone(&stream);
        let join = std::thread::Builder::new()
            .name(format!("emu-stream-{device}-{handle:x}"))
            .spawn(move || worker.run())
            .map_err(|e| {
                fail(
                    ACL_ERROR_RT_INTERNAL_ERROR,
                    format!("cannot start a stream worker: {e}"),
                )
            })?;
        *lock(&stream.worker) = Some(join);
        Ok(stream)
    }

    fn run(&self) {
        loop {
            let task = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(task) = q.tasks.pop_front() {
                        break Some((task, q.fault.is_some()));
                    }
                    if q.shutdown {
                        break None;
                    }
                    q.worker_waiting = true;
                    q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
                    q.worker_waiting = false;
                }
            };
            let Some((task, poisoned)) = task else { return };
            self.finish(execute(task, poisoned));
        }
    }

    /// Counts a task as run, with its fault (the first one sticks).
    fn finish(&self, result: Result<(), Fault>) {
        let mut q = lock(&self.queue);
        q.completed += 1;
        if let Err(fault) = result {
            q.fault.get_or_insert(fault);
        }
        if q.hosts_waiting > 0 {
            self.done.notify_all();
        }
    }

    /// Queues a task behind everything already submitted; returns its ticket for [`Self::wait`].
    pub(super) fn submit(&self, task: Task) -> u64 {
        let mut q = lock(&self.queue);
        q.tasks.push_back(task);
        q.submitted += 1;
        if q.worker_waiting {
            self.work.notify_one();
        }
        q.submitted
    }

    /// Waits until the task with `ticket` (and everything before it) has run; returns the sticky
    /// fault, if any.
    pub(super) fn wait(&self, ticket: u64) -> Result<(), Fault> {
        let mut q = lock(&self.queue);
        while q.completed < ticket {
            q = self.wait_done(q);
        }
        match &q.fault {
            None => Ok(()),
            Some(f) => Err(f.clone()),
        }
    }

    /// Counts a host wait on this stream's device (for [`EmuStats::host_waits`]); returns `self`.
    fn count_wait(&self) -> &Self {
        tally(self.device, |s| s.host_waits += 1);
        self
    }

    /// Waits until every task submitted so far has run; returns the sticky fault, if any.
    pub(super) fn synchronize(&self) -> Result<(), Fault> {
        let mut q = lock(&self.queue);
        let target = q.submitted;
        while q.completed < target {
            q = self.wait_done(q);
        }
        match &q.fault {
            None => Ok(()),
            Some(f) => Err(f.clone()),
        }
    }

    /// As [`Self::synchronize`], giving up after `timeout` (`None`: never); `Ok(false)` on time-out.
    fn synchronize_within(&self, timeout: Option<std::time::Duration>) -> Result<bool, Fault> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut q = lock(&self.queue);
        let target = q.submitted;
        while q.completed < target {
            q = match deadline {
                None => self.wait_done(q),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return Ok(false);
                    }
                    q.hosts_waiting += 1;
                    let mut q = self
                        .done
                        .wait_timeout(q, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    q.hosts_waiting -= 1;
                    q
                }
            };
        }
        match &q.fault {
            None => Ok(true),
            Some(f) => Err(f.clone()),
        }
    }

    /// Waits (as a host) until a task completes or the stream shuts down.
    fn wait_done<'a>(&self, mut q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        q.hosts_waiting += 1;
        let mut q = self.done.wait(q).unwrap_or_else(|e| e.into_inner());
        q.hosts_waiting -= 1;
        q
    }

    /// Whether every task submitted so far has run.
    fn idle(&self) -> bool {
        let q = lock(&self.queue);
        q.completed == q.submitted
    }

    /// Stops the worker; with `discard`, the tasks not yet started are dropped instead of run
    /// (`aclrtDestroyStreamForce`).
    pub(super) fn shutdown(&self, discard: bool) {
        {
            let mut q = lock(&self.queue);
            if discard {
                let dropped = q.tasks.len() as u64;
                q.tasks.clear();
                q.completed += dropped;
            }
            q.shutdown = true;
            self.work.notify_all();
            self.done.notify_all();
        }
        if let Some(join) = lock(&self.worker).take() {
            if join.thread().id() != std::thread::current().id() {
                let _ = join.join();
            }
        }
    }
}

/// Runs a task unless the stream's error is sticky; a panic is the stream's fault.
fn execute(task: Task, poisoned: bool) -> Result<(), Fault> {
    if poisoned {
        return Ok(());
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(task))
        .unwrap_or_else(|_| Err((ACL_ERROR_RT_INTERNAL_ERROR, "emulator task panicked".into())))
}

/// The stream a handle names, checked to belong to the calling thread's current device; null means the
/// device's default stream.
pub(super) fn resolve(stream: aclrtStream) -> Result<Arc<EmuStream>, aclError> {
    let dev = current_device()?;
    let emu = emu();
    let handle = if stream.is_null() {
        let mut inner = lock(&emu.devices[dev as usize].inner);
        match inner.default_stream {
            Some(h) => h,
            None => {
                let h = emu.handle();
                let s = EmuStream::spawn(dev, h)?;
                lock(&emu.objects).streams.insert(h, s);
                inner.default_stream = Some(h);
                h
            }
        }
    } else {
        stream as usize
    };
    let found = lock(&emu.objects).streams.get(&handle).cloned();
    match found {
        None => Err(fail(
            ACL_ERROR_RT_INVALID_HANDLE,
            format!("stream {handle:#x} does not exist (destroyed, or its device was reset)"),
        )),
        Some(s) if s.device != dev => Err(fail(
            ACL_ERROR_RT_STREAM_CONTEXT,
            format!(
                "stream {handle:#x} belongs to device {}, the current device is {dev}",
                s.device
            ),
        )),
        Some(s) => Ok(s),
    }
}

/// The stream a handle names, whatever the current device (for synchronise and destroy).
fn lookup(stream: aclrtStream) -> Result<Arc<EmuStream>, aclError> {
    if stream.is_null() {
        return resolve(stream);
    }
    lock(&emu().objects)
        .streams
        .get(&(stream as usize))
        .cloned()
        .ok_or_else(|| {
            fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("stream {stream:p} does not exist (destroyed, or its device was reset)"),
            )
        })
}

pub(super) unsafe extern "C" fn aclrtCreateStream(stream: *mut aclrtStream) -> aclError {
    entry("aclrtCreateStream", || {
        if stream.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "stream is null");
        }
        let dev = match current_device() {
            Ok(d) => d,
            Err(code) => return code,
        };
        let emu = emu();
        let handle = emu.handle();
        match EmuStream::spawn(dev, handle) {
            Ok(s) => {
                lock(&emu.objects).streams.insert(handle, s);
                // SAFETY: non-null and writable (C contract).
                unsafe { *stream = handle as aclrtStream };
                ACL_SUCCESS
            }
            Err(code) => code,
        }
    })
}

pub(super) unsafe extern "C" fn aclrtDestroyStream(stream: aclrtStream) -> aclError {
    entry("aclrtDestroyStream", || destroy(stream, false))
}

/// Destroys without waiting for the queued tasks: those not started are dropped (acl_rt.h,
/// aclrtDestroyStreamForce).
pub(super) unsafe extern "C" fn aclrtDestroyStreamForce(stream: aclrtStream) -> aclError {
    entry("aclrtDestroyStreamForce", || destroy(stream, true))
}

fn destroy(stream: aclrtStream, discard: bool) -> aclError {
    {
        if stream.is_null() {
            return fail(
                ACL_ERROR_INVALID_PARAM,
                "the default stream cannot be destroyed",
            );
        }
        let removed = lock(&emu().objects).streams.remove(&(stream as usize));
        match removed {
            Some(s) => {
                s.shutdown(discard);
                ACL_SUCCESS
            }
            None => fail(
                ACL_ERROR_RT_INVALID_HANDLE,
                format!("stream {stream:p} does not exist (destroyed, or its device was reset)"),
            ),
        }
    }
}

pub(super) unsafe extern "C" fn aclrtSynchronizeStream(stream: aclrtStream) -> aclError {
    entry("aclrtSynchronizeStream", || match lookup(stream) {
        Ok(s) => match s.count_wait().synchronize() {
            Ok(()) => ACL_SUCCESS,
            Err((code, message)) => fail(code, message),
        },
        Err(code) => code,
    })
}

/// `timeout` in milliseconds, -1 meaning forever (acl_rt.h, aclrtSynchronizeStreamWithTimeout);
/// `ACL_ERROR_RT_STREAM_SYNC_TIMEOUT` when the stream has not drained by then.
pub(super) unsafe extern "C" fn aclrtSynchronizeStreamWithTimeout(
    stream: aclrtStream,
    timeout: i32,
) -> aclError {
    entry("aclrtSynchronizeStreamWithTimeout", || {
        let limit = match timeout {
            -1 => None,
            ms if ms > 0 => Some(std::time::Duration::from_millis(ms as u64)),
            other => {
                return fail(
                    ACL_ERROR_INVALID_PARAM,
                    format!("timeout must be -1 (forever) or a positive number of ms, got {other}"),
                )
            }
        };
        match lookup(stream).map(|s| s.count_wait().synchronize_within(limit)) {
            Ok(Ok(true)) => ACL_SUCCESS,
            Ok(Ok(false)) => fail(
                ACL_ERROR_RT_STREAM_SYNC_TIMEOUT,
                format!("stream {stream:p} still had work after {timeout} ms"),
            ),
            Ok(Err((code, message))) => fail(code, message),
            Err(code) => code,
        }
    })
}

pub(super) unsafe extern "C" fn aclrtStreamQuery(
    stream: aclrtStream,
    status: *mut ascend_sys::aclrtStreamStatus,
) -> aclError {
    entry("aclrtStreamQuery", || {
        if status.is_null() {
            return fail(ACL_ERROR_INVALID_PARAM, "status is null");
        }
        match lookup(stream) {
            Ok(s) => {
                let value = if s.idle() {
                    ascend_sys::ACL_STREAM_STATUS_COMPLETE
                } else {
                    ascend_sys::ACL_STREAM_STATUS_NOT_READY
                };
                // SAFETY: non-null and writable (C contract).
                unsafe { *status = value };
                ACL_SUCCESS
            }
            Err(code) => code,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    fn recorder(log: &Arc<Mutex<Vec<u32>>>, id: u32) -> Task {
        let log = Arc::clone(log);
        Box::new(move || {
            lock(&log).push(id);
            Ok(())
        })
    }

    #[test]
    fn tasks_run_on_the_worker_after_submit_returns_in_order() {
        let stream = EmuStream::spawn(0, 0x5eed).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        // The worker is held: nothing submitted behind it may run before submit returns.
        let (release, gate) = mpsc::channel::<()>();
        stream.submit(Box::new(move || {
            let _ = gate.recv();
            Ok(())
        }));
        let here = std::thread::current().id();
        let ran_here = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran_here);
        stream.submit(Box::new(move || {
            flag.store(std::thread::current().id() == here, Ordering::SeqCst);
            Ok(())
        }));
        stream.submit(recorder(&log, 1));
        let ticket = stream.submit(recorder(&log, 2));
        assert!(lock(&log).is_empty(), "ran before the stream got to it");
        release.send(()).unwrap();
        stream.wait(ticket).unwrap();
        assert_eq!(*lock(&log), [1, 2]);
        assert!(
            !ran_here.load(Ordering::SeqCst),
            "a task ran on the submitting thread"
        );
        // A task's fault is the stream's sticky fault.
        let t = stream.submit(Box::new(|| Err((1, "boom".into()))));
        assert_eq!(stream.wait(t).unwrap_err().1, "boom");
        stream.shutdown(false);
    }
}
