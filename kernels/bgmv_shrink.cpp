// bgmv_shrink: y[b, :R] = scale * A[idx[b]] @ x[b] for idx[b] >= 0 (vLLM's LoRA shrink), on the vector cores.
//   x [B, H] f16/bf16, A [L, R, H] same dtype, idx int64 [B], y f32 [B, R], status uint32 [B].
//   Rows with idx[b] < 0 are never written. idx[b] >= L: the row is skipped and status[b] says so.
//   Accumulation in f32: per 64-element chunk of a tile a pairwise tree (WholeReduceSum), the chunks added in
//   order, the tiles' sums added in order: what one ReduceSum per tile and rank row gives, bit for bit.
//
// Work split: a task is (row, rank chunk of rankPerTask rank rows); tasks are dealt round-robin over the blocks.
// Per H tile a task moves x's tile and its rank rows' tiles in two copies and computes them together: x is cast
// once, one Mul per rank row multiplies that row by it (the rows' products are disjoint: no barrier between
// them, and x is never copied per row), one WholeReduceSum per 64-element chunk sums that chunk of every rank
// row (one repeat per rank row, hence rankPerTask <= 255), and rankPerTask-wide Adds combine the chunks.
// Minimal traffic (bytes), s = sizeof(dtype), over rows with idx >= 0:
//   8 B (idx) + 4 B (status) + sum_rows (H s + R H s + 4 R).
// This kernel moves that plus (rankSplit - 1) H s per row (x re-read per rank chunk; the tiling keeps
// rankSplit <= 1 + (R + 1) / 10, i.e. within 10%) plus the tiling struct once per block.
// UB (Rt = rankPerTask, Rp = Rt rounded up to 8): tileH s (x) + 2 Rt tileH s (A, double-buffered) +
// Rt tileH 4 (A f32) + tileH 4 (x f32) + tileH / 64 Rp 4 (chunk sums) + 3 Rp 4 (tile sum, accumulator,
// output) + 32 (status). Rt = 16, H = 576, f16: 76 KiB of the 184 KiB; the tiling shrinks tileH to fit.
#include "kernel_common.h"

using namespace AscendC;

template <typename T>
class BgmvShrink {
public:
    using InT = T;        // x and A
    using AccT = float;   // products and sums
    using IdxT = int64_t; // adapter indices, as vLLM passes them

    static constexpr uint32_t kBufferNum = 2;    // double-buffered A tiles: MTE2 of tile t+1 overlaps compute of t
    static constexpr uint32_t kChunk = 64;       // f32 lanes per 256-byte vector repeat
    static constexpr uint32_t kRowAlign = 16;    // 16 x 2-byte elements = one 32-byte UB block
    static constexpr uint32_t kSumAlign = 8;     // 8 f32 = one 32-byte UB block

    __aicore__ inline void Init(GM_ADDR x, GM_ADDR a, GM_ADDR idx, GM_ADDR y, GM_ADDR status, GM_ADDR tiling)
    {
        cold::LoadTiling(tiling_, tiling);
        const uint64_t h = tiling_.hiddenIn;
        xGm_.SetGlobalBuffer(reinterpret_cast<__gm__ InT*>(x), tiling_.batch * h);
        aGm_.SetGlobalBuffer(reinterpret_cast<__gm__ InT*>(a), static_cast<uint64_t>(tiling_.numLoras) * tiling_.rank * h);
        idxGm_.SetGlobalBuffer(reinterpret_cast<__gm__ IdxT*>(idx), tiling_.batch);
        yGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(y), static_cast<uint64_t>(tiling_.batch) * tiling_.rank);
        statusGm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(status), tiling_.batch);

        const uint32_t tile = tiling_.tileH;
        const uint32_t rows = tiling_.rankPerTask;
        sumStride_ = cold::CeilDiv(rows, kSumAlign) * kSumAlign;
        pipe_.InitBuffer(xQue_, 1, tile * sizeof(InT));
        pipe_.InitBuffer(aQue_, kBufferNum, rows * tile * sizeof(InT));
        pipe_.InitBuffer(aFloatBuf_, rows * tile * sizeof(AccT));
        pipe_.InitBuffer(xFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(partBuf_, cold::CeilDiv(tile, kChunk) * sumStride_ * sizeof(AccT));
        pipe_.InitBuffer(tileSumBuf_, sumStride_ * sizeof(AccT));
        pipe_.InitBuffer(accBuf_, sumStride_ * sizeof(AccT));
        pipe_.InitBuffer(outQue_, 1, sumStride_ * sizeof(AccT));
        pipe_.InitBuffer(statusBuf_, 32);
    }

    __aicore__ inline void Process()
    {
        const uint32_t tasks = tiling_.batch * tiling_.rankSplit;
        for (uint32_t task = GetBlockIdx(); task < tasks; task += GetBlockNum()) {
            const uint32_t row = task / tiling_.rankSplit;
            const uint32_t chunk = task % tiling_.rankSplit;
            const IdxT lora = idxGm_.GetValue(row);
            const bool bad = lora >= static_cast<IdxT>(tiling_.numLoras);
            if (chunk == 0) {  // one task per row owns its status word
                cold::WriteWord(statusGm_, row,
                                bad ? (COLD_STATUS_FAULT | (COLD_STATUS_BAD_ADAPTER_INDEX << 24)) : 0u,
                                statusBuf_.Get<uint32_t>());
            }
            const uint32_t r0 = chunk * tiling_.rankPerTask;
            if (lora < 0 || bad || r0 >= tiling_.rank) {
                continue;  // no adapter: y[row] untouched; bad index: skipped, reported above
            }
            ProcessTask(row, static_cast<uint32_t>(lora), r0, cold::Min(tiling_.rankPerTask, tiling_.rank - r0));
        }
    }

private:
    __aicore__ inline void ProcessTask(uint32_t row, uint32_t lora, uint32_t r0, uint32_t rc)
    {
        LocalTensor<AccT> acc = accBuf_.Get<AccT>();
        Duplicate(acc, 0.0f, static_cast<int32_t>(rc));
        const uint32_t h = tiling_.hiddenIn;
        const uint64_t aRow0 = (static_cast<uint64_t>(lora) * tiling_.rank + r0) * h;
        for (uint32_t h0 = 0; h0 < h; h0 += tiling_.tileH) {
            const uint32_t len = cold::Min(tiling_.tileH, h - h0);
            CopyIn(row, aRow0 + h0, h0, len, rc);
            Compute(len, rc);
        }
        CopyOut(row, r0, rc);
    }

    // x's tile, and the tile of each of the task's rank rows, each row landing on a whole number of 32-byte
    // blocks. A full tile (tileH, a multiple of 64) moves x with DataCopy; the last one, whose length need not
    // be a multiple of 32 bytes, with DataCopyPad. The rank rows' GM gap is in bytes (DataCopyPad GM->UB srcStride,
    // docs/KERNELS.md, "Ascend C API surface").
    __aicore__ inline void CopyIn(uint32_t row, uint64_t aOffset, uint32_t h0, uint32_t len, uint32_t rc)
    {
        const DataCopyPadExtParams<InT> pad(false, 0, 0, InT(0.0f));
        LocalTensor<InT> xLocal = xQue_.AllocTensor<InT>();
        const uint64_t xOffset = static_cast<uint64_t>(row) * tiling_.hiddenIn + h0;
        if (len == tiling_.tileH) {
            DataCopy(xLocal, xGm_[xOffset], len);
        } else {
            DataCopyPad(xLocal, xGm_[xOffset], DataCopyExtParams(1, len * sizeof(InT), 0, 0, 0), pad);
        }
        xQue_.EnQue(xLocal);
        LocalTensor<InT> aLocal = aQue_.AllocTensor<InT>();
        DataCopyPad(aLocal, aGm_[aOffset],
                    DataCopyExtParams(static_cast<uint16_t>(rc), len * sizeof(InT),
                                      (tiling_.hiddenIn - len) * sizeof(InT), 0, 0),
                    pad);
        aQue_.EnQue(aLocal);
    }

    // acc[r] += sum over the tile of A[r] * x, for the task's rc rank rows at once.
    __aicore__ inline void Compute(uint32_t len, uint32_t rc)
    {
        const uint32_t stride = cold::CeilDiv(len, kRowAlign) * kRowAlign;  // elements per rank row in UB
        LocalTensor<AccT> xFloat = xFloatBuf_.Get<AccT>();
        LocalTensor<InT> xLocal = xQue_.DeQue<InT>();
        Cast(xFloat, xLocal, RoundMode::CAST_NONE, len);
        xQue_.FreeTensor(xLocal);
        LocalTensor<InT> aLocal = aQue_.DeQue<InT>();
        LocalTensor<AccT> prod = aFloatBuf_.Get<AccT>();
        Cast(prod, aLocal, RoundMode::CAST_NONE, static_cast<int32_t>(rc * stride));
        aQue_.FreeTensor(aLocal);
        PipeBarrier<PIPE_V>();  // the Muls read both Casts
        // A row's pad lanes (stride - len) are left as cast: no mask below covers them.
        for (uint32_t r = 0; r < rc; ++r) {
            Mul(prod[r * stride], prod[r * stride], xFloat, static_cast<int32_t>(len));
        }
        PipeBarrier<PIPE_V>();
        // One repeat per rank row (rows stride * 4 / 32 blocks apart), one call per 64-lane chunk of the tile,
        // the last masked to the tile's tail: part[c][r] = chunk c of rank row r. The pad lanes are never
        // inside a mask.
        LocalTensor<AccT> part = partBuf_.Get<AccT>();
        const int32_t repStride = static_cast<int32_t>(stride * sizeof(AccT) / 32);
        const uint32_t chunks = cold::CeilDiv(len, kChunk);
        for (uint32_t c = 0; c < chunks; ++c) {
            WholeReduceSum(part[c * sumStride_], prod[c * kChunk], static_cast<int32_t>(cold::Min(len - c * kChunk, kChunk)),
                           static_cast<int32_t>(rc), 1, 1, repStride);
        }
        // The tile's sum from 0, chunk by chunk in order (as ReduceSum adds its repeats), then into acc.
        LocalTensor<AccT> tileSum = tileSumBuf_.Get<AccT>();
        Duplicate(tileSum, 0.0f, static_cast<int32_t>(rc));
        for (uint32_t c = 0; c < chunks; ++c) {
            PipeBarrier<PIPE_V>();  // reads the chunk sums and the previous Add's result
            Add(tileSum, tileSum, part[c * sumStride_], static_cast<int32_t>(rc));
        }
        LocalTensor<AccT> acc = accBuf_.Get<AccT>();
        PipeBarrier<PIPE_V>();
        Add(acc, acc, tileSum, static_cast<int32_t>(rc));
        PipeBarrier<PIPE_V>();  // the next tile's Duplicate and Adds, or CopyOut's Muls, read acc
    }

    __aicore__ inline void CopyOut(uint32_t row, uint32_t r0, uint32_t rc)
    {
        LocalTensor<AccT> out = outQue_.AllocTensor<AccT>();
        Muls(out, accBuf_.Get<AccT>(), tiling_.scale, static_cast<int32_t>(rc));
        outQue_.EnQue(out);
        out = outQue_.DeQue<AccT>();
        DataCopyPad(yGm_[static_cast<uint64_t>(row) * tiling_.rank + r0], out,
                    DataCopyExtParams(1, rc * sizeof(AccT), 0, 0, 0));
        outQue_.FreeTensor(out);
    }

    BgmvShrinkTiling tiling_;
    uint32_t sumStride_ = 0;  // f32 elements between two chunks' sums in partBuf_: rankPerTask rounded up to 8
    TPipe pipe_;
    TQue<TPosition::VECIN, 1> xQue_;
    TQue<TPosition::VECIN, kBufferNum> aQue_;
    TQue<TPosition::VECOUT, 1> outQue_;
    TBuf<TPosition::VECCALC> aFloatBuf_, xFloatBuf_, partBuf_, tileSumBuf_, accBuf_;
    TBuf<TPosition::VECOUT> statusBuf_;  // DataCopyPad's source: VECIN or VECOUT on Atlas A2
    GlobalTensor<InT> xGm_, aGm_;
    GlobalTensor<IdxT> idxGm_;
    GlobalTensor<AccT> yGm_;
    GlobalTensor<uint32_t> statusGm_;
};

#define BGMV_SHRINK_ENTRY(SUFFIX, TYPE)                                                                        \
    extern "C" __global__ __aicore__ void bgmv_shrink_##SUFFIX(GM_ADDR x, GM_ADDR a, GM_ADDR idx, GM_ADDR y,    \
                                                               GM_ADDR status, GM_ADDR tiling)                 \
    {                                                                                                          \
        BgmvShrink<TYPE> op;                                                                                   \
        op.Init(x, a, idx, y, status, tiling);                                                                 \
        op.Process();                                                                                          \
    }

BGMV_SHRINK_ENTRY(f16, half)
BGMV_SHRINK_ENTRY(bf16, bfloat16_t)
