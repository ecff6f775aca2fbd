//! Streams: each stream runs its tasks in order, asynchronously to the host, as a board's stream does:
//! a launch returns before its kernel runs, even a kernel of a microsecond, so host code that reads a
//! result without waiting for it fails here as it would there, and the host can compute while the
//! stream works (docs/DECODING.md, "third round").
//!
//! Who runs the tasks: a stream with work schedules one *drain* job on rayon's pool, which runs the
//! queued tasks in order until the queue is empty. There is no thread per stream: handing a task to a
//! sleeping thread costs a futex wake, and in a decode step that wake cost the host more than the
//! small kernels it started (docs/DECODING.md, "fourth round"), while rayon's threads are awake
//! during the host's own parallel work. A host thread that waits on a stream whose tasks nobody is
//! running runs them itself (it *helps*), so waits make progress even when the pool is busy or its
//! threads are themselves waiting. A timed wait only waits (a task it took could outlast its
//! timeout). Tasks never wait on rayon themselves (a kernel's blocks run on the launching thread
//! and the emulator's block pool, joined by a blocking receive: kernels.rs, `run_shares`): a rayon
//! wait inside a task would run other queued jobs, another stream's tasks among them, nested
//! inside it.
//!
//! A failed task (a kernel fault, a copy whose memory vanished) makes the stream's error sticky: later
//! tasks on it are skipped and every synchronisation reports the first fault, with its message, as on a
//! board where an AI core exception poisons the stream.
#![allow(non_snake_case)]

use super::*;
use ascend_sys::aclrtStream;
use std::sync::Condvar;

type Task = Box<dyn FnOnce() -> Result<(), Fault> + Send>;

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    submitted: u64,
    completed: u64,
    fault: Option<Fault>,
    /// A thread (a drain job or a helping host) is running this stream's tasks; tasks run one at a
    /// time, in order, by whoever holds this.
    running: bool,
    /// A drain job is queued on the pool and has not started.
    drain_queued: bool,
    /// Host threads waiting on `done` for tasks to complete: a completion must wake them.
    hosts_waiting: usize,
}

pub(super) struct EmuStream {
    pub(super) device: u32,
    queue: Mutex<Queue>,
    /// Signalled when a task completes and someone waits (`hosts_waiting`).
    done: Condvar,
}

impl EmuStream {
    fn new(device: u32) -> Arc<Self> {
        Arc::new(EmuStream {
            device,
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
        })
    }

    /// Queues a task behind everything already submitted; returns its ticket for [`Self::wait`].
    /// Never runs the task itself.
    pub(super) fn submit(self: &Arc<Self>, task: Task) -> u64 {
        let mut q = lock(&self.queue);
        q.tasks.push_back(task);
        q.submitted += 1;
        let ticket = q.submitted;
        self.schedule_drain(q);
        ticket
    }

    /// Queues a drain job unless someone runs or will run the queued tasks.
    fn schedule_drain(self: &Arc<Self>, mut q: MutexGuard<'_, Queue>) {
        if q.running || q.drain_queued || q.tasks.is_empty() {
            return;
        }
        q.drain_queued = true;
        drop(q);
        let stream = Arc::clone(self);
        rayon::spawn(move || stream.drain());
    }

    /// The drain job: runs tasks until the queue is empty, unless a helping host already runs them
    /// (it schedules a new job if it leaves tasks behind).
    fn drain(self: Arc<Self>) {
        let mut q = lock(&self.queue);
        q.drain_queued = false;
        while let Some(next) = self.take(&mut q) {
            drop(q);
            q = self.run(next);
        }
    }

    /// The next task and whether the stream's error is sticky, claiming `running`; `None` when the
    /// queue is empty or someone else runs it.
    fn take(&self, q: &mut Queue) -> Option<(Task, bool)> {
        if q.running {
            return None;
        }
        let task = q.tasks.pop_front()?;
        q.running = true;
        Some((task, q.fault.is_some()))
    }

    /// Runs a task taken with [`Self::take`], counts it as run with its fault (the first one sticks)
    /// and releases `running`.
    fn run(&self, (task, poisoned): (Task, bool)) -> MutexGuard<'_, Queue> {
        let result = execute(task, poisoned);
        let mut q = lock(&self.queue);
        q.completed += 1;
        q.running = false;
        if let Err(fault) = result {
            q.fault.get_or_insert(fault);
        }
        if q.hosts_waiting > 0 {
            self.done.notify_all();
        }
        q
    }

    /// Waits until the task with `ticket` (and everything before it) has run; returns the sticky
    /// fault, if any.
    pub(super) fn wait(self: &Arc<Self>, ticket: u64) -> Result<(), Fault> {
        self.wait_until(ticket, None).map(|_| ())
    }

    /// Counts a host wait on this stream's device (for [`EmuStats::host_waits`]); returns `self`.
    fn count_wait(self: &Arc<Self>) -> &Arc<Self> {
        tally(self.device, |s| s.host_waits += 1);
        self
    }

    /// Waits until every task submitted so far has run; returns the sticky fault, if any.
    pub(super) fn synchronize(self: &Arc<Self>) -> Result<(), Fault> {
        self.synchronize_within(None).map(|_| ())
    }

    /// As [`Self::synchronize`], giving up after `timeout` (`None`: never); `Ok(false)` on time-out.
    fn synchronize_within(
        self: &Arc<Self>,
        timeout: Option<std::time::Duration>,
    ) -> Result<bool, Fault> {
        let target = lock(&self.queue).submitted;
        self.wait_until(target, timeout.map(|t| std::time::Instant::now() + t))
    }

    /// Waits until `target` tasks have completed. Without a deadline it runs queued tasks on this
    /// thread while nobody else does; with one it only waits (a task it took could outlast the
    /// deadline) and gives up then (`Ok(false)`). Tasks still queued when it returns get a drain job.
    fn wait_until(
        self: &Arc<Self>,
        target: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<bool, Fault> {
        let mut q = lock(&self.queue);
        while q.completed < target {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left == Some(std::time::Duration::ZERO) {
                self.schedule_drain(q);
                return Ok(false);
            }
            if left.is_none() {
                if let Some(next) = self.take(&mut q) {
                    drop(q);
                    q = self.run(next);
                    continue;
                }
            }
            // Someone else runs the task we wait for: sleep until a completion.
            q.hosts_waiting += 1;
            q = match left {
                None => self.done.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    self.done
                        .wait_timeout(q, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            q.hosts_waiting -= 1;
        }
        let result = match &q.fault {
            None => Ok(true),
            Some(f) => Err(f.clone()),
        };
        self.schedule_drain(q);
        result
    }

    /// Whether every task submitted so far has run.
    fn idle(&self) -> bool {
        let q = lock(&self.queue);
        q.completed == q.submitted
    }

    /// Ends the stream's work: waits for every queued task, or with `discard` drops the tasks not
    /// yet started (`aclrtDestroyStreamForce`) and waits for the one running.
    pub(super) fn shutdown(self: &Arc<Self>, discard: bool) {
        if discard {
            let mut q = lock(&self.queue);
            let dropped = q.tasks.len() as u64;
            q.tasks.clear();
            q.completed += dropped;
        }
        let _ = self.synchronize();
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
                lock(&emu.objects).streams.insert(h, EmuStream::new(dev));
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
        lock(&emu.objects)
            .streams
            .insert(handle, EmuStream::new(dev));
        // SAFETY: non-null and writable (C contract).
        unsafe { *stream = handle as aclrtStream };
        ACL_SUCCESS
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
    fn tasks_run_after_submit_returns_in_order_and_faults_stick() {
        let stream = EmuStream::new(0);
        let log = Arc::new(Mutex::new(Vec::new()));
        // The first task is held: nothing submitted behind it may run before it is released.
        let (release, gate) = mpsc::channel::<()>();
        stream.submit(Box::new(move || {
            let _ = gate.recv();
            Ok(())
        }));
        let in_submit = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&in_submit);
        stream.submit(Box::new(move || {
            // Still set only if the task ran inside the submit call below.
            assert!(!flag.load(Ordering::SeqCst), "a task ran inside submit");
            Ok(())
        }));
        in_submit.store(false, Ordering::SeqCst);
        stream.submit(recorder(&log, 1));
        let ticket = stream.submit(recorder(&log, 2));
        assert!(lock(&log).is_empty(), "ran before the stream got to it");
        release.send(()).unwrap();
        stream.wait(ticket).unwrap();
        assert_eq!(*lock(&log), [1, 2]);
        // A task's fault is the stream's sticky fault; the tasks behind it are skipped.
        stream.submit(Box::new(|| Err((1, "boom".into()))));
        let t = stream.submit(recorder(&log, 3));
        assert_eq!(stream.wait(t).unwrap_err().1, "boom");
        assert_eq!(*lock(&log), [1, 2]);
        stream.shutdown(false);
    }

    /// A wait from the only thread of the pool that would run the stream's drain job: the waiter runs
    /// the tasks itself instead of waiting for a job that cannot start.
    #[test]
    fn a_wait_makes_progress_when_no_pool_thread_is_free() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        pool.install(|| {
            let stream = EmuStream::new(0);
            for id in 0..4 {
                stream.submit(recorder(&log, id));
            }
            stream.synchronize().unwrap();
            assert!(stream.idle());
        });
        assert_eq!(*lock(&log), [0, 1, 2, 3]);
    }
}
