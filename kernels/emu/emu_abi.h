// The C boundary between the Rust AscendCL emulator (src/runtime/emu) and the kernels compiled for the
// host against kernels/emu. The Rust side owns memory, streams and launch; this side runs one block
// of one kernel at a time and enforces the chip's rules while it does.
#ifndef ASCEND_COLD_EMU_ABI_H
#define ASCEND_COLD_EMU_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Calls the kernel entry point with args[0..num_args) as its GM_ADDR parameters, in order.
typedef void (*EmuTrampoline)(void* const* args);

typedef struct EmuKernelInfo {
    const char* name;      // the entry point's name, as aclrtBinaryGetFunction asks for it
    uint32_t num_args;     // parameters of the entry point, each an 8-byte GM address
    EmuTrampoline entry;
} EmuKernelInfo;

// One live device allocation. A kernel may touch GM only inside these.
typedef struct EmuGmRegion {
    uintptr_t base;
    size_t len;
} EmuGmRegion;

typedef struct EmuLaunchEnv {
    const EmuGmRegion* regions;  // sorted by base, non-overlapping
    size_t num_regions;
    uint32_t ub_bytes;           // Unified Buffer capacity per core
} EmuLaunchEnv;

// What one block did; the tiling tools report these.
typedef struct EmuBlockCounters {
    uint64_t gm_read_bytes;
    uint64_t gm_write_bytes;
    uint64_t copy_instrs;     // DataCopy / DataCopyPad calls
    uint64_t vector_instrs;   // vector instructions issued (each repeat counted)
    uint64_t vector_elems;    // elements processed by vector instructions
    uint64_t ub_peak_bytes;   // highest UB offset allocated by the block's pipe
} EmuBlockCounters;

size_t ascend_emu_kernel_count(void);
const EmuKernelInfo* ascend_emu_kernel_at(size_t index);

// Runs block `block_idx` of `block_num`. Returns 0, or non-zero after writing a NUL-terminated message
// naming the kernel, the block and the rule broken into msg[0..msg_cap).
int ascend_emu_run_block(const EmuKernelInfo* kernel, void* const* args, uint32_t block_idx,
                         uint32_t block_num, const EmuLaunchEnv* env, EmuBlockCounters* counters,
                         char* msg, size_t msg_cap);

#ifdef __cplusplus
}
#endif

#endif
