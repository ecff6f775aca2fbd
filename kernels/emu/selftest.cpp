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

// Deliberate misuse of the Ascend C API, one rule per `*mode` (uint32): proves the emulator catches it.
//   0: DeQue of an empty queue; 1: AllocTensor past the queue's buffers; 2: EnQue past the depth;
//   3: a vector operand at a UB address that is not 32-byte aligned; 4: UB capacity exceeded.
#include "kernel_operator.h"

extern "C" void emu_selftest_api_misuse(uint8_t* mode)
{
    using namespace AscendC;
    GlobalTensor<uint32_t> modeGm;
    modeGm.SetGlobalBuffer(reinterpret_cast<uint32_t*>(mode), 1);
    const uint32_t m = modeGm.GetValue(0);
    TPipe pipe;
    TQue<TPosition::VECIN, 1> que;
    pipe.InitBuffer(que, 1, 256);
    if (m == 0) {
        que.DeQue<float>();
    } else if (m == 1) {
        que.AllocTensor<float>();
        que.AllocTensor<float>();
    } else if (m == 2) {
        TQue<TPosition::VECIN, 1> two;
        pipe.InitBuffer(two, 2, 256);
        two.EnQue(two.AllocTensor<float>());
        two.EnQue(two.AllocTensor<float>());
    } else if (m == 3) {
        LocalTensor<float> t = que.AllocTensor<float>();
        Duplicate(t[3], 1.0f, 8);
    } else if (m == 4) {
        TBuf<TPosition::VECCALC> huge;
        pipe.InitBuffer(huge, 1u << 30);
    }
}
