// Prototypes of every kernel entry point, and the list the emulator registers and build.rs turns into
// the emulator's binary manifest (one `X(name)` per line below). Each parameter is a GM address (8 bytes
// in the packed argument block), in declaration order; the tiling struct (kernels/tiling.h) is last.
#ifndef ASCEND_COLD_KERNEL_ENTRIES_H
#define ASCEND_COLD_KERNEL_ENTRIES_H

#include <cstdint>

extern "C" {
// Emulator self-test: z[i] = x[i] + y[i] for i < *n (f32), blocks striding over i. Raw, no Ascend C API.
void emu_selftest_add_f32(uint8_t* x, uint8_t* y, uint8_t* z, uint8_t* n);
// Emulator self-test: deliberate Ascend C API misuse selected by *mode (see selftest.cpp).
void emu_selftest_api_misuse(uint8_t* mode);
// Board smoke test through the queue API: z = x + y; tiling SmokeAddTiling.
void smoke_add_f32(uint8_t* x, uint8_t* y, uint8_t* z, uint8_t* tiling);
// y[b] = scale * A[idx[b]] @ x[b]; tiling BgmvShrinkTiling.
void bgmv_shrink_f16(uint8_t* x, uint8_t* a, uint8_t* idx, uint8_t* y, uint8_t* status, uint8_t* tiling);
void bgmv_shrink_bf16(uint8_t* x, uint8_t* a, uint8_t* idx, uint8_t* y, uint8_t* status, uint8_t* tiling);
// y[b, off:off+H_out] (+)= Bw[idx[b]] @ x[b]; tiling BgmvExpandTiling.
void bgmv_expand_f16(uint8_t* x, uint8_t* w, uint8_t* idx, uint8_t* y, uint8_t* status, uint8_t* tiling);
void bgmv_expand_bf16(uint8_t* x, uint8_t* w, uint8_t* idx, uint8_t* y, uint8_t* status, uint8_t* tiling);
// CoLD scoring; tiling ColdScoreTiling. splits == 1: cold_score alone; else local, score, reduce.
void cold_score_f16(uint8_t* e, uint8_t* a, uint8_t* tokens, uint8_t* best, uint8_t* scores, uint8_t* status,
                    uint8_t* workspace, uint8_t* tiling);
void cold_score_bf16(uint8_t* e, uint8_t* a, uint8_t* tokens, uint8_t* best, uint8_t* scores, uint8_t* status,
                     uint8_t* workspace, uint8_t* tiling);
void cold_score_f32(uint8_t* e, uint8_t* a, uint8_t* tokens, uint8_t* best, uint8_t* scores, uint8_t* status,
                    uint8_t* workspace, uint8_t* tiling);
void cold_local_f16(uint8_t* e, uint8_t* a, uint8_t* workspace, uint8_t* tiling);
void cold_local_bf16(uint8_t* e, uint8_t* a, uint8_t* workspace, uint8_t* tiling);
void cold_local_f32(uint8_t* e, uint8_t* a, uint8_t* workspace, uint8_t* tiling);
void cold_reduce(uint8_t* tokens, uint8_t* best, uint8_t* status, uint8_t* workspace, uint8_t* tiling);
}

// clang-format off
#define ASCEND_COLD_KERNELS(X) \
    X(emu_selftest_add_f32) \
    X(emu_selftest_api_misuse) \
    X(smoke_add_f32) \
    X(bgmv_shrink_f16) \
    X(bgmv_shrink_bf16) \
    X(bgmv_expand_f16) \
    X(bgmv_expand_bf16) \
    X(cold_score_f16) \
    X(cold_score_bf16) \
    X(cold_score_f32) \
    X(cold_local_f16) \
    X(cold_local_bf16) \
    X(cold_local_f32) \
    X(cold_reduce)
// clang-format on

#endif
