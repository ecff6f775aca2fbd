// Helpers shared by the kernels: reading the tiling struct from GM, and writing a status word.
#ifndef ASCEND_COLD_KERNEL_COMMON_H
#define ASCEND_COLD_KERNEL_COMMON_H

#include "kernel_operator.h"
#include "tiling.h"

namespace cold {

// Copies a tiling struct of 4-byte fields from GM with scalar loads.
template <typename Tiling>
__aicore__ inline void LoadTiling(Tiling& tiling, GM_ADDR tilingGm)
{
    static_assert(sizeof(Tiling) % 4 == 0, "tiling structs are made of 4-byte fields");
    AscendC::GlobalTensor<uint32_t> words;
    words.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(tilingGm), sizeof(Tiling) / 4);
    uint32_t* dst = reinterpret_cast<uint32_t*>(&tiling);
    for (uint32_t i = 0; i < sizeof(Tiling) / 4; ++i) {
        dst[i] = words.GetValue(i);
    }
}

// Writes a uint32 word to gm[index] through UB (`scratch` is a 32-byte UB tensor the caller owns).
__aicore__ inline void WriteWord(const AscendC::GlobalTensor<uint32_t>& gm, uint32_t index, uint32_t value,
                                 const AscendC::LocalTensor<uint32_t>& scratch)
{
    scratch.SetValue(0, value);
    AscendC::PipeBarrier<AscendC::PIPE_ALL>();  // scalar write visible to the MTE3 copy
    AscendC::DataCopyPad(gm[index], scratch, AscendC::DataCopyExtParams(1, 4, 0, 0, 0));
    AscendC::PipeBarrier<AscendC::PIPE_ALL>();  // copy done before the scratch word is reused
}

__aicore__ inline uint32_t CeilDiv(uint32_t a, uint32_t b) { return (a + b - 1) / b; }
__aicore__ inline uint32_t Min(uint32_t a, uint32_t b) { return a < b ? a : b; }

}  // namespace cold

#endif
