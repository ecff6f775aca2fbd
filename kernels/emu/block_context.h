// Per-block state of the host emulation: which kernel and block is running, the GM regions it may
// touch, its UB budget, its pipe model and its counters. One block runs per thread at a time (thread_local).
#ifndef ASCEND_COLD_EMU_BLOCK_CONTEXT_H
#define ASCEND_COLD_EMU_BLOCK_CONTEXT_H

#include <cstdint>
#include <stdexcept>
#include <string>

#include "emu_abi.h"
#include "hazard.h"

namespace emu {

// Thrown when a kernel breaks a rule the chip enforces; caught at the ABI boundary and reported.
class Violation : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct BlockContext {
    const char* kernel = "";
    uint32_t blockIdx = 0;
    uint32_t blockNum = 1;
    const EmuLaunchEnv* env = nullptr;
    EmuBlockCounters* counters = nullptr;
    uint8_t* ub = nullptr;   // this block's Unified Buffer (env->ub_bytes, poisoned with 0xFF at block start)
    uint32_t ubUsed = 0;     // bytes handed out by TPipe::InitBuffer so far
    PipeModel pipes;         // who touched which UB bytes, and what orders the pipes (hazard.h)
};

// The block running on this thread; null outside ascend_emu_run_block.
BlockContext* CurrentBlock();

// Throws a Violation naming the kernel, block and rule.
[[noreturn]] void Fail(const std::string& rule);

// Whether [addr, addr + bytes) lies inside one live GM allocation of the running launch.
bool GmSpanValid(const void* addr, uint64_t bytes);

// Checks that [addr, addr + bytes) lies inside one live GM allocation; throws otherwise.
void CheckGm(const void* addr, uint64_t bytes, const char* what);

// The block running on this thread (registry.cpp sets it around each block).
extern thread_local BlockContext* tCurrent;

// The running block; Fail()s when called outside a launch (a kernel API used on the host outside
// ascend_emu_run_block). Inline: every emulated instruction asks for it several times.
inline BlockContext& Block()
{
    if (tCurrent == nullptr) {
        Fail("Ascend C API used outside a kernel launch");
    }
    return *tCurrent;
}

}  // namespace emu

#endif
