//! The kernels that build.rs compiled: the embedded binaries, and the C ABI of the host-compiled
//! kernels (`kernels/emu/emu_abi.h`) through which the emulator runs them block by block.

// The emulator provider (src/runtime/emu) is the user of this module outside tests.
#![allow(dead_code)]

use std::os::raw::{c_char, c_int, c_void};

/// The emulator's kernel binary: a manifest naming the entry points compiled for the host.
pub(crate) const EMU_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.emu"));

/// The kernels compiled and linked for the 910B vector cores (dav-c220-vec) when build.rs found CANN;
/// `None` otherwise. Loaded with `aclrtBinaryLoadFromData` and the vector-core load option, entry
/// points by the names of `kernels/kernel_entries.h` (docs/KERNELS.md, device build).
#[cfg(ascend_cold_npu_binary)]
pub(crate) const NPU_BINARY: Option<&[u8]> = Some(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/kernels_dav-c220-vec.elf"
)));
/// The kernels compiled for the 910B vector cores: not built (no CANN at build time).
#[cfg(not(ascend_cold_npu_binary))]
pub(crate) const NPU_BINARY: Option<&[u8]> = None;

/// Mirrors `EmuKernelInfo` in `kernels/emu/emu_abi.h`.
#[repr(C)]
pub(crate) struct EmuKernelInfo {
    pub name: *const c_char,
    pub num_args: u32,
    pub entry: unsafe extern "C" fn(*const *mut c_void),
}

// SAFETY: the table entries are immutable statics; the name is a string literal.
unsafe impl Sync for EmuKernelInfo {}

/// Mirrors `EmuGmRegion`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmuGmRegion {
    pub base: usize,
    pub len: usize,
}

/// Mirrors `EmuLaunchEnv`.
#[repr(C)]
pub(crate) struct EmuLaunchEnv {
    pub regions: *const EmuGmRegion,
    pub num_regions: usize,
    pub ub_bytes: u32,
}

// SAFETY: the environment is only read during a launch, and the region array it points to outlives
// the launch (it is borrowed by `run_blocks`).
unsafe impl Sync for EmuLaunchEnv {}

/// Mirrors `EmuBlockCounters`: what one block did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounters {
    /// Bytes read from global memory.
    pub gm_read_bytes: u64,
    /// Bytes written to global memory.
    pub gm_write_bytes: u64,
    /// DataCopy / DataCopyPad instructions.
    pub copy_instrs: u64,
    /// Vector instructions issued (each repeat counted).
    pub vector_instrs: u64,
    /// Elements processed by vector instructions.
    pub vector_elems: u64,
    /// Highest Unified Buffer offset the block allocated.
    pub ub_peak_bytes: u64,
}

extern "C" {
    pub(crate) fn ascend_emu_kernel_count() -> usize;
    pub(crate) fn ascend_emu_kernel_at(index: usize) -> *const EmuKernelInfo;
    pub(crate) fn ascend_emu_run_block(
        kernel: *const EmuKernelInfo,
        args: *const *mut c_void,
        block_idx: u32,
        block_num: u32,
        env: *const EmuLaunchEnv,
        counters: *mut BlockCounters,
        msg: *mut c_char,
        msg_cap: usize,
    ) -> c_int;
}

/// Below this estimated time for a launch's blocks, they run one after another on the thread that
/// runs the launch: handing them to the block pool and waiting for it costs more than the parallel
/// speed-up. Chosen by measurement (docs/DECODING.md, "second round").
const INLINE_BLOCKS_BELOW: std::time::Duration = std::time::Duration::from_micros(300);

/// What a launch's time is remembered by: the kernel, its block count and its footprint class.
type BlockTimeKey = (usize, u32, u32);

/// Per [`BlockTimeKey`]: the time one block took at the last such launch.
type BlockTimes = std::collections::HashMap<BlockTimeKey, std::time::Duration>;

/// A launch as the timing memo tells launches apart: the block count saturates at the core count,
/// so two launches of one kernel with as many blocks can differ in size by any factor; the bytes
/// of device memory its arguments point into (rounded up to a power of two) tell them apart.
#[derive(Clone, Copy)]
struct LaunchShape {
    blocks: u32,
    footprint_class: u32,
}

impl LaunchShape {
    /// `args` are the launch's GM addresses, `regions` the device's allocations sorted by base.
    fn new(blocks: u32, args: &[u64], regions: &[EmuGmRegion]) -> Self {
        let footprint: u64 = args
            .iter()
            .filter_map(|&addr| {
                let at = regions.partition_point(|r| r.base as u64 <= addr);
                let region = regions.get(at.checked_sub(1)?)?;
                (addr - region.base as u64 <= region.len as u64).then_some(region.len as u64)
            })
            .sum();
        LaunchShape {
            blocks,
            footprint_class: 64 - footprint.leading_zeros(),
        }
    }
}

/// The threads that run the shares of a launch's blocks besides the thread running the launch: as
/// many as the host has cores, less that one, at least one. Created on the first launch that needs
/// them and never dropped; `None` if the host would not start them (the shares then run in turn).
fn block_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores.saturating_sub(1).max(1))
            .thread_name(|i| format!("emu-blocks-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// `run(0)` .. `run(shares - 1)`, each share's result or its panic: share 0 on this thread, the
/// others as jobs of [`block_pool`]. This thread waits for them in a blocking receive, never by
/// running other rayon jobs: a launch runs as a stream task, often on one of rayon's threads, where
/// a rayon wait would run other queued jobs (another stream's tasks) nested inside this kernel's
/// hold on the device bytes; and the block pool runs nothing but blocks, which never wait on a
/// stream, so the shares always finish.
fn run_shares<R: Send + 'static>(
    shares: u32,
    run: &(dyn Fn(u32) -> R + Sync),
) -> Vec<std::thread::Result<R>> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let Some(pool) = block_pool() else {
        return (0..shares)
            .map(|share| catch_unwind(AssertUnwindSafe(|| run(share))))
            .collect();
    };
    let (done, finished) = std::sync::mpsc::channel();
    // SAFETY: the reference is only used by the jobs spawned below, and this function does not
    // return (nor unwind: share 0 runs under catch_unwind) before it has received one message per
    // job, each sent after its job's last use of `run`; so `run` outlives every use.
    let shared: &'static (dyn Fn(u32) -> R + Sync) = unsafe { std::mem::transmute(run) };
    for share in 1..shares {
        let done = done.clone();
        pool.spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| shared(share)));
            let _ = done.send((share, result));
        });
    }
    let mut results: Vec<std::thread::Result<R>> = vec![catch_unwind(AssertUnwindSafe(|| run(0)))];
    results.extend((1..shares).map(|_| Err(Box::new("not run") as Box<dyn std::any::Any + Send>)));
    // `done` stays alive, so a receive blocks until a job reports (the pool is never dropped, and
    // every job reports before it ends).
    for _ in 1..shares {
        if let Ok((share, result)) = finished.recv() {
            results[share as usize] = result;
        }
    }
    results
}

fn lock_block_times() -> std::sync::MutexGuard<'static, BlockTimes> {
    static TIMES: std::sync::OnceLock<std::sync::Mutex<BlockTimes>> = std::sync::OnceLock::new();
    TIMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A kernel compiled for the host, found by name in the registry of `kernels/kernel_entries.h`.
#[derive(Clone, Copy)]
pub(crate) struct HostKernel {
    info: &'static EmuKernelInfo,
}

impl HostKernel {
    /// Looks up a kernel entry point by name.
    pub(crate) fn find(name: &str) -> Option<Self> {
        // SAFETY: the registry functions only read a static table; indices below the count are valid.
        unsafe {
            (0..ascend_emu_kernel_count()).find_map(|i| {
                let info = &*ascend_emu_kernel_at(i);
                let entry = std::ffi::CStr::from_ptr(info.name).to_str().ok()?;
                (entry == name).then_some(HostKernel { info })
            })
        }
    }

    /// The entry point's name.
    pub(crate) fn name(&self) -> &'static str {
        // SAFETY: names in the static table are NUL-terminated string literals.
        unsafe { std::ffi::CStr::from_ptr(self.info.name) }
            .to_str()
            .unwrap_or("?")
    }

    /// Number of 8-byte GM-address parameters.
    pub(crate) fn num_args(&self) -> usize {
        self.info.num_args as usize
    }

    /// Whether the same kernel's last launch of the same shape took under `limit` in all.
    fn estimate_below(&self, shape: LaunchShape, limit: std::time::Duration) -> bool {
        let per_block = lock_block_times().get(&self.block_time_key(shape)).copied();
        per_block.is_some_and(|t| t * shape.blocks < limit)
    }

    fn block_time_key(&self, shape: LaunchShape) -> BlockTimeKey {
        (
            self.info as *const EmuKernelInfo as usize,
            shape.blocks,
            shape.footprint_class,
        )
    }

    /// Runs every block of the kernel (blocks spread over up to `threads` host threads), checking every
    /// GM access against `regions` (sorted by base, non-overlapping) and UB use against `ub_bytes`.
    /// Returns each block's counters, or the first violation's message.
    ///
    /// # Safety
    /// `args` must hold `num_args()` addresses, and `regions` must describe host memory that stays
    /// valid and is not accessed by anyone else while the kernel runs.
    pub(crate) unsafe fn run_blocks(
        &self,
        args: &[u64],
        block_num: u32,
        regions: &[EmuGmRegion],
        ub_bytes: u32,
        threads: usize,
    ) -> Result<Vec<BlockCounters>, String> {
        if args.len() != self.num_args() {
            return Err(format!(
                "kernel {} takes {} arguments ({} bytes), got {}",
                self.name(),
                self.num_args(),
                8 * self.num_args(),
                args.len()
            ));
        }
        let env = EmuLaunchEnv {
            regions: regions.as_ptr(),
            num_regions: regions.len(),
            ub_bytes,
        };
        let run_one = |block: u32| -> Result<BlockCounters, String> {
            let mut counters = BlockCounters::default();
            let mut msg = [0 as c_char; 512];
            // SAFETY: the caller guarantees args and regions; env, counters and msg outlive the call.
            let status = unsafe {
                ascend_emu_run_block(
                    self.info,
                    args.as_ptr() as *const *mut c_void,
                    block,
                    block_num,
                    &env,
                    &mut counters,
                    msg.as_mut_ptr(),
                    msg.len(),
                )
            };
            if status == 0 {
                Ok(counters)
            } else {
                // SAFETY: the C side always NUL-terminates within msg_cap (snprintf).
                Err(unsafe { std::ffi::CStr::from_ptr(msg.as_ptr()) }
                    .to_string_lossy()
                    .into_owned())
            }
        };
        // Blocks run on the calling thread when the same kernel's last launch of the same shape says
        // they all take less than handing them over would cost (the decoding loop launches hundreds
        // of kernels per step, most done in microseconds); otherwise in `threads` shares, the calling
        // thread running the first and the block pool the others ([`run_shares`]).
        let threads = threads.clamp(1, block_num.max(1) as usize) as u32;
        let shape = LaunchShape::new(block_num, args, regions);
        let inline = threads == 1 || self.estimate_below(shape, INLINE_BLOCKS_BELOW);
        let started = std::time::Instant::now();
        let result: Result<Vec<BlockCounters>, String> = if inline {
            (0..block_num).map(run_one).collect()
        } else {
            let per_share = block_num.div_ceil(threads);
            let run_share = |share: u32| -> Result<Vec<BlockCounters>, String> {
                let first = share * per_share;
                (first..(first + per_share).min(block_num))
                    .map(run_one)
                    .collect()
            };
            // The first violation in block order, or every block's counters in block order.
            run_shares(threads, &run_share)
                .into_iter()
                .map(|share| {
                    share.unwrap_or_else(|_| Err("an emulated block panicked".to_string()))
                })
                .collect::<Result<Vec<_>, String>>()
                .map(|shares| shares.concat())
        };
        // A faulted launch stopped early: its time says nothing about the next one.
        if block_num > 0 && result.is_ok() {
            let busy = started.elapsed() * if inline { 1 } else { threads };
            lock_block_times().insert(self.block_time_key(shape), busy / block_num);
        }
        result
    }
}

// The tests hold cold_score to the harness's tolerance model (feature `harness`, on by default).
#[cfg(all(test, feature = "harness"))]
mod tests;

#[cfg(test)]
mod selftest {
    use super::*;

    #[test]
    fn launch_shape_tells_apart_launches_over_memory_of_other_sizes() {
        let regions = [
            EmuGmRegion {
                base: 0x1000,
                len: 0x100,
            },
            EmuGmRegion {
                base: 0x8000,
                len: 0x4000,
            },
        ];
        let class = |args: &[u64]| LaunchShape::new(4, args, &regions).footprint_class;
        // Inside the small region, and inside the large one: other classes.
        assert_ne!(class(&[0x1010]), class(&[0x9000]));
        // The same allocations, other offsets: the same class.
        assert_eq!(class(&[0x1000, 0x8000]), class(&[0x10ff, 0xbfff]));
        // Addresses in no allocation count nothing.
        assert_eq!(class(&[0x1010, 0x2000, 0x10]), class(&[0x1010]));
        assert_eq!(class(&[]), 0);
    }

    fn region_of<T>(v: &[T]) -> EmuGmRegion {
        EmuGmRegion {
            base: v.as_ptr() as usize,
            len: std::mem::size_of_val(v),
        }
    }

    #[test]
    fn selftest_kernel_runs_every_block_and_checks_bounds() {
        let kernel = HostKernel::find("emu_selftest_add_f32").expect("registered");
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let y: Vec<f32> = (0..1000).map(|i| 0.5 * i as f32).collect();
        let mut z = vec![f32::NAN; 1000];
        let mut n = vec![1000u64];
        let mut regions = vec![region_of(&x), region_of(&y), region_of(&z), region_of(&n)];
        regions.sort_by_key(|r| r.base);
        let args = [
            x.as_ptr() as u64,
            y.as_ptr() as u64,
            z.as_mut_ptr() as u64,
            n.as_mut_ptr() as u64,
        ];
        // SAFETY: every address is a live Vec described by `regions`.
        let counters = unsafe { kernel.run_blocks(&args, 7, &regions, 192 * 1024, 2) }.unwrap();
        assert_eq!(counters.len(), 7);
        for (i, &zi) in z.iter().enumerate() {
            assert_eq!(zi, 1.5 * i as f32);
        }
        n[0] = 1001; // one element past the end of x
                     // SAFETY: as above; the kernel's overrun must be caught, not performed.
        let err = unsafe { kernel.run_blocks(&args, 7, &regions, 192 * 1024, 2) }.unwrap_err();
        assert!(
            err.contains("GM bounds") && err.contains("emu_selftest_add_f32"),
            "{err}"
        );
        // SAFETY: as above.
        let err = unsafe { kernel.run_blocks(&args[..3], 1, &regions, 192 * 1024, 1) }.unwrap_err();
        assert!(err.contains("takes 4 arguments"), "{err}");
    }
}
