// The table of kernels compiled for the host, and the ABI entry that runs one block of one of them.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "block_context.h"
#include "../kernel_entries.h"

namespace emu {

thread_local BlockContext* tCurrent = nullptr;

namespace {

// Calls a kernel entry whose parameters are all GM addresses with the packed argument block.
template <typename F>
struct Trampoline;

template <typename... Args>
struct Trampoline<void (*)(Args...)> {
    static constexpr uint32_t kArity = sizeof...(Args);

    template <void (*Fn)(Args...)>
    static void Run(void* const* args)
    {
        Invoke<Fn>(args, std::index_sequence_for<Args...>{});
    }

    template <void (*Fn)(Args...), size_t... I>
    static void Invoke(void* const* args, std::index_sequence<I...>)
    {
        Fn(static_cast<Args>(args[I])...);
    }
};

#define ASCEND_COLD_REGISTER(name) \
    {#name, Trampoline<decltype(&name)>::kArity, &Trampoline<decltype(&name)>::template Run<&name>},

const EmuKernelInfo kKernels[] = {ASCEND_COLD_KERNELS(ASCEND_COLD_REGISTER)};

}  // namespace

BlockContext* CurrentBlock() { return tCurrent; }

void Fail(const std::string& rule)
{
    const BlockContext* block = tCurrent;
    if (block == nullptr) {
        throw Violation(rule);
    }
    throw Violation(std::string("kernel ") + block->kernel + ", block " + std::to_string(block->blockIdx) + "/" +
                    std::to_string(block->blockNum) + ": " + rule);
}

bool GmSpanValid(const void* addr, uint64_t bytes)
{
    const BlockContext* block = tCurrent;
    if (block == nullptr || block->env == nullptr) {
        Fail("GM access outside a launch");
    }
    const uintptr_t start = reinterpret_cast<uintptr_t>(addr);
    const EmuGmRegion* begin = block->env->regions;
    const EmuGmRegion* end = begin + block->env->num_regions;
    // The last region whose base is <= start is the only one that can contain it.
    const EmuGmRegion* it =
        std::upper_bound(begin, end, start, [](uintptr_t a, const EmuGmRegion& r) { return a < r.base; });
    if (it == begin) {
        return false;
    }
    const EmuGmRegion& region = *(it - 1);
    return start - region.base <= region.len && bytes <= region.len - (start - region.base);
}

void CheckGm(const void* addr, uint64_t bytes, const char* what)
{
    if (GmSpanValid(addr, bytes)) {
        return;
    }
    char buf[160];
    std::snprintf(buf, sizeof(buf), "GM bounds: %s of %llu bytes at %#llx is outside every device allocation", what,
                  static_cast<unsigned long long>(bytes),
                  static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(addr)));
    Fail(buf);
}

}  // namespace emu

extern "C" size_t ascend_emu_kernel_count(void) { return sizeof(emu::kKernels) / sizeof(emu::kKernels[0]); }

extern "C" const EmuKernelInfo* ascend_emu_kernel_at(size_t index)
{
    return index < ascend_emu_kernel_count() ? &emu::kKernels[index] : nullptr;
}

extern "C" int ascend_emu_run_block(const EmuKernelInfo* kernel, void* const* args, uint32_t block_idx,
                                    uint32_t block_num, const EmuLaunchEnv* env, EmuBlockCounters* counters,
                                    char* msg, size_t msg_cap)
{
    emu::BlockContext block;
    block.kernel = kernel->name;
    block.blockIdx = block_idx;
    block.blockNum = block_num;
    block.env = env;
    block.counters = counters;
    thread_local emu::PipeModel pipes;
    pipes.Reset(env->ub_bytes);
    block.pipes = std::move(pipes);
    // One UB per host thread, reused by the blocks it runs; TPipe::InitBuffer poisons each range it hands
    // out (emu/pipe.h), so a block never sees an earlier block's data. Poisoning only what is handed
    // out keeps a launch of 48 blocks from writing 48 x 192 KiB it never uses.
    thread_local std::vector<uint8_t> ub;
    if (ub.size() < env->ub_bytes) {
        ub.assign(env->ub_bytes, 0xFF);
    }
    block.ub = ub.data();
    emu::tCurrent = &block;
    int status = 0;
    try {
        kernel->entry(args);
    } catch (const std::exception& e) {
        std::snprintf(msg, msg_cap, "%s", e.what());
        status = 1;
    } catch (...) {
        std::snprintf(msg, msg_cap, "kernel %s, block %u: unknown exception", kernel->name, block_idx);
        status = 1;
    }
    emu::tCurrent = nullptr;
    pipes = std::move(block.pipes);
    return status;
}
