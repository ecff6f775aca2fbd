// bgmv_shrink: y[b, :R] = scale * A[idx[b]] @ x[b] for idx[b] >= 0 (vLLM's LoRA shrink), on the vector cores.
//   x [B, H] f16/bf16, A [L, R, H] same dtype, idx int64 [B], y f32 [B, R], status uint32 [B].
//   Rows with idx[b] < 0 are never written. idx[b] >= L: the row is skipped and status[b] says so.
//   Accumulation in f32: per tile, products in f32, ReduceSum, summed into a per-rank accumulator.
//
// Work split: a task is (row, rank chunk); tasks are dealt round-robin over the blocks. Each task reads
// x[b] once and its rankPerTask rows of A[idx[b]] once.
// Minimal traffic (bytes), s = sizeof(dtype), over rows with idx >= 0:
//   8 B (idx) + 4 B (status) + sum_rows (H s + R H s + 4 R).
// This kernel moves that plus (rankSplit - 1) H s per row (x re-read per rank chunk; the tiling keeps
// rankSplit <= 1 + (R + 1) / 10, i.e. within 10%) plus the tiling struct once per block.
// UB for the default tiling (tileH = 4096, f16): x 8 KiB + A 2 x 8 KiB + x f32 16 KiB + A f32 16 KiB +
// reduce work 1 KiB + accumulator / output / status words < 2 KiB = about 59 KiB of the 184 KiB.
#include "kernel_common.h"

using namespace AscendC;

template <typename T>
class BgmvShrink {
public:
    using InT = T;        // x and A
    using AccT = float;   // products and sums
    using IdxT = int64_t; // adapter indices, as vLLM passes them

    static constexpr uint32_t kBufferNum = 2;   // double-buffered A tiles: MTE2 of rank r+1 overlaps compute of r
    static constexpr uint32_t kRepeatElems = 64; // f32 elements per 256-byte vector repeat
    static constexpr uint32_t kBlockBytes = 32;  // UB and DataCopy granularity

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
        const uint32_t repeats = cold::CeilDiv(tile, kRepeatElems);
        pipe_.InitBuffer(xQue_, 1, tile * sizeof(InT));
        pipe_.InitBuffer(aQue_, kBufferNum, tile * sizeof(InT));
        pipe_.InitBuffer(xFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(aFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(workBuf_, cold::CeilDiv(repeats, 8) * kBlockBytes);
        pipe_.InitBuffer(sumBuf_, kBlockBytes);
        pipe_.InitBuffer(accBuf_, cold::CeilDiv(tiling_.rankPerTask, 8) * kBlockBytes);
        pipe_.InitBuffer(outQue_, 1, cold::CeilDiv(tiling_.rankPerTask, 8) * kBlockBytes);
        pipe_.InitBuffer(statusBuf_, kBlockBytes);
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
        for (uint32_t r = 0; r < rc; ++r) {
            acc.SetValue(r, 0.0f);
        }
        const uint32_t h = tiling_.hiddenIn;
        const uint32_t tile = tiling_.tileH;
        const uint32_t fullTiles = h / tile;
        const uint64_t aRow0 = (static_cast<uint64_t>(lora) * tiling_.rank + r0) * h;
        for (uint32_t t = 0; t < fullTiles; ++t) {
            CopyInX(row, t * tile, tile);
            for (uint32_t r = 0; r < rc; ++r) {
                CopyInA(aRow0 + static_cast<uint64_t>(r) * h + t * tile, tile);
                Compute(r, tile);
            }
        }
        const uint32_t tail = h - fullTiles * tile;
        if (tail > 0) {
            ProcessTail(row, aRow0, fullTiles * tile, tail, rc);
        }
        CopyOut(row, r0, rc);
    }

    // The last H tile: its length need not be a multiple of 32 bytes, so it moves with DataCopyPad.
    __aicore__ inline void ProcessTail(uint32_t row, uint64_t aRow0, uint32_t h0, uint32_t len, uint32_t rc)
    {
        const DataCopyExtParams params(1, len * sizeof(InT), 0, 0, 0);
        const DataCopyPadExtParams<InT> pad(false, 0, 0, InT(0.0f));
        LocalTensor<InT> xLocal = xQue_.AllocTensor<InT>();
        DataCopyPad(xLocal, xGm_[static_cast<uint64_t>(row) * tiling_.hiddenIn + h0], params, pad);
        xQue_.EnQue(xLocal);
        CastX(len);
        for (uint32_t r = 0; r < rc; ++r) {
            LocalTensor<InT> aLocal = aQue_.AllocTensor<InT>();
            DataCopyPad(aLocal, aGm_[aRow0 + static_cast<uint64_t>(r) * tiling_.hiddenIn + h0], params, pad);
            aQue_.EnQue(aLocal);
            Compute(r, len);
        }
    }

    __aicore__ inline void CopyInX(uint32_t row, uint32_t h0, uint32_t len)
    {
        LocalTensor<InT> xLocal = xQue_.AllocTensor<InT>();
        DataCopy(xLocal, xGm_[static_cast<uint64_t>(row) * tiling_.hiddenIn + h0], len);
        xQue_.EnQue(xLocal);
        CastX(len);
    }

    __aicore__ inline void CastX(uint32_t len)
    {
        LocalTensor<InT> xLocal = xQue_.DeQue<InT>();
        Cast(xFloatBuf_.Get<AccT>(), xLocal, RoundMode::CAST_NONE, len);
        xQue_.FreeTensor(xLocal);
    }

    __aicore__ inline void CopyInA(uint64_t offset, uint32_t len)
    {
        LocalTensor<InT> aLocal = aQue_.AllocTensor<InT>();
        DataCopy(aLocal, aGm_[offset], len);
        aQue_.EnQue(aLocal);
    }

    // acc[r] += sum(A tile * x tile), in f32.
    __aicore__ inline void Compute(uint32_t r, uint32_t len)
    {
        LocalTensor<InT> aLocal = aQue_.DeQue<InT>();
        LocalTensor<AccT> aFloat = aFloatBuf_.Get<AccT>();
        LocalTensor<AccT> sum = sumBuf_.Get<AccT>();
        Cast(aFloat, aLocal, RoundMode::CAST_NONE, len);
        aQue_.FreeTensor(aLocal);
        PipeBarrier<PIPE_V>();  // Mul reads both Casts
        Mul(aFloat, aFloat, xFloatBuf_.Get<AccT>(), len);
        PipeBarrier<PIPE_V>();
        // The scalar unit stores the sum after waiting for the vector unit (dav_c220 ReduceSumImpl): readable
        // without a barrier.
        ReduceSum(sum, aFloat, workBuf_.Get<AccT>(), len);
        LocalTensor<AccT> acc = accBuf_.Get<AccT>();
        acc.SetValue(r, acc.GetValue(r) + sum.GetValue(0));
    }

    __aicore__ inline void CopyOut(uint32_t row, uint32_t r0, uint32_t rc)
    {
        LocalTensor<AccT> acc = accBuf_.Get<AccT>();
        LocalTensor<AccT> out = outQue_.AllocTensor<AccT>();
        // MTE3 -> S: the scalar unit overwrites a buffer the previous task's copy-out read (the queue orders
        // the vector unit after that copy, not the scalar unit).
        PipeBarrier<PIPE_ALL>();
        for (uint32_t r = 0; r < rc; ++r) {
            out.SetValue(r, acc.GetValue(r) * tiling_.scale);
        }
        PipeBarrier<PIPE_ALL>();  // scalar writes visible to MTE3
        outQue_.EnQue(out);
        out = outQue_.DeQue<AccT>();
        DataCopyPad(yGm_[static_cast<uint64_t>(row) * tiling_.rank + r0], out,
                    DataCopyExtParams(1, rc * sizeof(AccT), 0, 0, 0));
        outQue_.FreeTensor(out);
    }

    BgmvShrinkTiling tiling_;
    TPipe pipe_;
    TQue<TPosition::VECIN, 1> xQue_;
    TQue<TPosition::VECIN, kBufferNum> aQue_;
    TQue<TPosition::VECOUT, 1> outQue_;
    TBuf<TPosition::VECCALC> xFloatBuf_, aFloatBuf_, workBuf_, sumBuf_, accBuf_;
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
