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
//   3: a vector operand at a UB address that is not 32-byte aligned; 4: UB capacity exceeded;
//   5: Compares over a count that is not whole 256-byte repeats; 6: DataCopyPad GM->UB into VECCALC;
//   7: DataCopy GM->UB into VECOUT; 8: DataCopy UB->GM from VECIN; 9: a destination partly overlapping a source;
//   10: ReduceMax with a sharedTmpBuffer smaller than its page derives; 11: a WholeReduceSum stride past 65535;
//   12: DataCopyPad with 4096 blocks; 13: ReduceMax's value-index result at a 4-byte (not 8-byte) address;
//   14: relying on DataCopyPad's padding value with both pad counts 0 (the buffer is {14, x, out}: out gets the
//       sum of the 32-byte block DataCopyPad filled from x, 8 x on the chip, x if the padding value held);
//   15: DataCopy from a GM address not aligned to the element size.
// Pipe hazards, each access pair with no synchronisation between them (the buffer is {mode, 7 more words}):
//   16: MTE2 writes, V reads (RAW); 17: V writes, V reads (RAW without PipeBarrier<PIPE_V>); 18: V reads,
//   MTE2 writes (WAR: a copy into a buffer the previous task's vector op still reads); 19: S writes, MTE3 reads;
//   20: V writes, S reads.
//   21: DataCopyPad UB->GM from VECCALC.
//   22: a level-0 Mul with a mask of 65 f32 lanes; 23: a level-0 Mul whose destination overlaps its repeated
//       (stride 0) source.
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
    TBuf<TPosition::VECCALC> calc;
    pipe.InitBuffer(calc, 256);
    TBuf<TPosition::VECOUT> out;
    pipe.InitBuffer(out, 256);
    GlobalTensor<float> io;
    io.SetGlobalBuffer(reinterpret_cast<float*>(mode), m == 14 ? 3 : m >= 16 ? 8 : 1);
    TBuf<TPosition::VECIN> in;
    pipe.InitBuffer(in, 256);
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
    } else if (m == 5) {
        Compares(out.Get<uint8_t>(), calc.Get<float>(), 0.0f, CMPMODE::GE, 100);
    } else if (m == 6) {
        DataCopyPad(calc.Get<float>(), io, DataCopyExtParams(1, 4, 0, 0, 0), DataCopyPadExtParams<float>());
    } else if (m == 7) {
        DataCopy(out.Get<float>(), io, 8);
    } else if (m == 8) {
        DataCopy(io, que.AllocTensor<float>(), 8);
    } else if (m == 9) {
        LocalTensor<float> t = calc.Get<float>();
        Add(t[8], t, t, 32);
    } else if (m == 10) {
        ReduceMax(out.Get<float>(), calc.Get<float>(), que.AllocTensor<float>()[56], 64, true);
    } else if (m == 11) {
        WholeReduceSum(out.Get<float>(), calc.Get<float>(), 8, 1, 1, 1, 65536);
    } else if (m == 12) {
        DataCopyPad(que.AllocTensor<float>(), io, DataCopyExtParams(4096, 4, 0, 0, 0), DataCopyPadExtParams<float>());
    } else if (m == 13) {
        ReduceMax(out.Get<float>()[1], calc.Get<float>(), que.AllocTensor<float>(), 64, true);
    } else if (m == 14) {
        LocalTensor<float> x = que.AllocTensor<float>();
        DataCopyPad(x, io[1], DataCopyExtParams(1, 4, 0, 0, 0), DataCopyPadExtParams<float>(true, 0, 0, 0.0f));
        PipeBarrier<PIPE_ALL>();
        LocalTensor<float> sum = out.Get<float>();
        ReduceSum(sum, x, calc.Get<float>(), 8);
        PipeBarrier<PIPE_ALL>();
        DataCopyPad(io[2], sum, DataCopyExtParams(1, 4, 0, 0, 0));
    } else if (m == 15) {
        GlobalTensor<float> odd;
        odd.SetGlobalBuffer(reinterpret_cast<float*>(mode + 2), 8);
        DataCopy(que.AllocTensor<float>(), odd, 8);
    } else if (m == 16) {
        DataCopy(in.Get<float>(), io, 8);
        Add(calc.Get<float>(), in.Get<float>(), in.Get<float>(), 8);
    } else if (m == 17) {
        Duplicate(calc.Get<float>(), 1.0f, 8);
        Add(out.Get<float>(), calc.Get<float>(), calc.Get<float>(), 8);
    } else if (m == 18) {
        Add(calc.Get<float>(), in.Get<float>(), in.Get<float>(), 8);
        DataCopy(in.Get<float>(), io, 8);
    } else if (m == 19) {
        out.Get<float>().SetValue(0, 1.0f);
        DataCopyPad(io, out.Get<float>(), DataCopyExtParams(1, 4, 0, 0, 0));
    } else if (m == 20) {
        Duplicate(calc.Get<float>(), 1.0f, 8);
        calc.Get<float>().GetValue(0);
    } else if (m == 21) {
        DataCopyPad(io, calc.Get<float>(), DataCopyExtParams(1, 4, 0, 0, 0));
    } else if (m == 22) {
        Mul(calc.Get<float>(), calc.Get<float>(), in.Get<float>(), 65, 1, BinaryRepeatParams(1, 1, 1, 8, 8, 0));
    } else if (m == 23) {
        LocalTensor<float> t = calc.Get<float>();
        Mul(t, t, t[8], 16, 2, BinaryRepeatParams(1, 1, 1, 2, 2, 0));
    }
}
