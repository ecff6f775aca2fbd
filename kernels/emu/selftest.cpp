// A kernel that exercises only the emulator's launch path (argument block, every block run, GM bounds),
// independent of the Ascend C API layer; the runtime tests and `ascend-cold devices` use it.
#include <cstring>

#include "block_context.h"
#include "../kernel_entries.h"

extern "C" void emu_selftest_add_f32(uint8_t* x, uint8_t* y, uint8_t* z, uint8_t* n)
{
    const emu::BlockContext* block = emu::CurrentBlock();
    emu::CheckGm(n, sizeof(uint64_t), "read of n");
    uint64_t count = 0;
    std::memcpy(&count, n, sizeof(count));
    for (uint64_t i = block->blockIdx; i < count; i += block->blockNum) {
        emu::CheckGm(x + 4 * i, 4, "read of x");
        emu::CheckGm(y + 4 * i, 4, "read of y");
        emu::CheckGm(z + 4 * i, 4, "write of z");
        float a, b;
        std::memcpy(&a, x + 4 * i, 4);
        std::memcpy(&b, y + 4 * i, 4);
        const float c = a + b;
        std::memcpy(z + 4 * i, &c, 4);
    }
    block->counters->gm_read_bytes += 8 + 8 * (count / block->blockNum);
    block->counters->gm_write_bytes += 4 * (count / block->blockNum);
}
