//! The kernels that build.rs compiled: the embedded binaries, and the C ABI of the host-compiled
//! kernels (`kernels/emu/emu_abi.h`) through which the emulator runs them block by block.

use std::os::raw::{c_char, c_int, c_void};

/// The emulator's kernel binary: a manifest naming the entry points compiled for the host.
pub(crate) const EMU_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.emu"));

/// Mirrors `EmuKernelInfo` in `kernels/emu/emu_abi.h`.
#[repr(C)]
pub(crate) struct EmuKernelInfo {
    pub name: *const c_char,
    pub num_args: u32,
    pub entry: unsafe extern "C" fn(*const *mut c_void),
}

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
