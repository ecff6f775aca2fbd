// Host build of the Ascend C API subset the kernels use. Kernels `#include "kernel_operator.h"` exactly as
// on the device; on the host the include path resolves here. One file per concept:
//   dtypes.h (half, bfloat16_t), tensor.h (GlobalTensor, LocalTensor), pipe.h (TPipe, TQue, TBuf),
//   data_copy.h (DataCopy, DataCopyPad), vec_ops.h (Cast and the vector instructions).
// Signatures follow asc-devkit include/basic_api/ (kernel_operator_*_intf.h, kernel_tpipe.h,
// kernel_tensor.h, kernel_struct_data_copy.h). Rules the chip enforces are checked and reported
// through emu::Fail, which aborts the block with a message naming the kernel, block and rule.
#ifndef ASCEND_COLD_EMU_KERNEL_OPERATOR_H
#define ASCEND_COLD_EMU_KERNEL_OPERATOR_H

#include <cstdint>

#include "block_context.h"
#include "dtypes.h"
#include "tensor.h"
#include "pipe.h"
#include "data_copy.h"
#include "vec_ops.h"

#define ASCEND_COLD_EMU 1

// Function and address-space qualifiers of the device compiler: nothing on the host.
#define __global__
#define __aicore__
#define __gm__
#define GM_ADDR uint8_t*

namespace AscendC {

// kernel_operator_sys_var_intf.h: the block (core) this instance runs as, and how many there are. On dav_c220 an
// AIV core reports get_block_idx() * get_subblockdim() + get_subblockid() and GetBlockNum() is the launch's
// numBlocks (impl/basic_api/dav_c220/kernel_operator_sys_var_impl.h); that is [0, numBlocks) and numBlocks only
// for a vector-only launch (GetBlockIdx's and GetBlockNum's pages; a mixed AIC:AIV = 1:2 launch numbers the
// vector cores 0..2 numBlocks while GetBlockNum stays numBlocks). Every launch of these kernels is vector-only:
// the device build marks each entry point K_TYPE_AIV and both runtimes load with the vector-core magic (the
// emulator refuses any other load, src/runtime/emu/launch.rs), so these two are exact.
inline int64_t GetBlockIdx() { return emu::Block().blockIdx; }
inline int64_t GetBlockNum() { return emu::Block().blockNum; }

enum pipe_t { PIPE_S = 0, PIPE_V, PIPE_M, PIPE_MTE1, PIPE_MTE2, PIPE_MTE3, PIPE_ALL };

// Pipeline barrier (kernel_operator_block_sync_intf.h): every earlier operation of `pipe` (of every pipe for
// PIPE_ALL) completes before the next one; PIPE_S is not supported (PipeBarrier(ISASI).md: the scalar unit is in
// order). The emulator runs in program order and records the ordering in the pipe model (hazard.h).
template <pipe_t pipe>
inline void PipeBarrier()
{
    static_assert(pipe != PIPE_S, "PipeBarrier does not take PIPE_S");
    constexpr int model = pipe == PIPE_ALL ? emu::kPipes
                          : pipe == PIPE_V ? emu::kPipeV
                          : pipe == PIPE_MTE2 ? emu::kPipeMte2
                          : pipe == PIPE_MTE3 ? emu::kPipeMte3
                                              : -1;
    if (model >= 0) {
        emu::Block().pipes.Barrier(model);
    }
}

}  // namespace AscendC

#endif
