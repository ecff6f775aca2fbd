// bgmv_expand: y[b, off:off+H_out] (+)= Bw[idx[b]] @ x[b] for idx[b] >= 0 (vLLM's LoRA expand / expand_slice).
//   x f32 [B, R], Bw [L, H_out, R] f16/bf16, idx int64 [B], y [B, H_full] same dtype as Bw, status uint32 [B].
//   Rows with idx[b] < 0 are never read or written. idx[b] >= L: skipped, status[b] says so.
//   addInputs = 0 overwrites the slice, 1 adds to it (in f32, one rounding to the output dtype).
//   With numSegments > 0, Bw is block-diagonal and stored without its zeros (docs/SEMANTICS.md, bgmv_expand):
//   segment j gives output rows rowStart_j.. + rows_j from x lanes rankStart_j.. + rank_j, its weights
//   [L, rows_j, rank_j] after segment j-1's; rows no segment covers are not written. One launch then expands
//   q/k/v (or gate/up) of a fused projection without multiplying their zeros.
//
// Work split: a task is (row, chunk of H_out); tasks are dealt round-robin over the blocks. Within a task, per
// segment it meets: x's lanes of the segment into one UB row, then per tile of tileH output rows the tileH x
// rank_j weights arrive in one DataCopyPad (each row padded to 32 bytes in UB), are cast to f32 and multiplied by
// the x row (a level-0 Mul whose x operand repeats with stride 0), and WholeReduceSum folds each row: one repeat
// per output row (hence tileH <= 255), and one Mul and one WholeReduceSum per 64-lane rank chunk (a repeat covers
// 256 bytes = 64 f32), the chunk sums added in f32. rank_j in 1..=128 (vLLM's LoRA ranks): 1 or 2 chunks, the
// last one masked to the tail.
// Minimal traffic (bytes), s = sizeof(dtype), over rows with idx >= 0 (dense: one segment of H_out rows, R lanes):
//   8 B (idx) + 4 B (status) + sum_rows sum_j (rows_j rank_j s + 4 rank_j + rows_j s (write) [+ rows_j s (read)]).
// This kernel moves that plus 4 rank_j per extra chunk of a row meeting segment j (x re-read) plus the tiling once
// per block.
// UB (rowStride = the largest rank_j rounded up to 16): tileH rowStride (2 s + 4) for Bw (double-buffered) and
// Bw f32, rowStride 4 for x, plus tileH (2 s + 12) for y in/out, y f32, sum and the chunk partial sum. R = 16,
// tileH = 248, f16: 35 KiB; R = 128 f16: the tiling shrinks tileH to 128 (131 KiB of the 184 KiB).
#include "kernel_common.h"

using namespace AscendC;

template <typename T>
class BgmvExpand {
public:
    using OutT = T;        // Bw and y
    using AccT = float;    // x, products and sums
    using IdxT = int64_t;

    static constexpr uint32_t kBufferNum = 2;     // double-buffered weight tiles
    static constexpr uint32_t kRowAlign = 16;     // 16 x 2-byte elements = one 32-byte UB block per weight row
    static constexpr uint32_t kBlockBytes = 32;
    static constexpr uint32_t kRankChunk = 64;    // f32 lanes per WholeReduceSum repeat (256 bytes)

    __aicore__ inline void Init(GM_ADDR x, GM_ADDR w, GM_ADDR idx, GM_ADDR y, GM_ADDR status, GM_ADDR tiling)
    {
        cold::LoadTiling(tiling_, tiling);
        if (tiling_.numSegments == 0) {  // dense: one segment of every row and lane
            numSegments_ = 1;
            segments_[0] = BgmvExpandSegment{0, tiling_.hiddenOut, 0, tiling_.rank};
        } else {
            numSegments_ = cold::Min(tiling_.numSegments, COLD_EXPAND_MAX_SEGMENTS);
            for (uint32_t j = 0; j < numSegments_; ++j) {
                segments_[j] = tiling_.segments[j];
            }
        }
        uint64_t wLen = 0;
        uint32_t maxRank = 0;
        for (uint32_t j = 0; j < numSegments_; ++j) {
            wOffset_[j] = wLen;
            wLen += static_cast<uint64_t>(tiling_.numLoras) * segments_[j].rows * segments_[j].rank;
            maxRank = segments_[j].rank > maxRank ? segments_[j].rank : maxRank;
        }
        const uint64_t r = tiling_.rank;
        xGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(x), tiling_.batch * r);
        wGm_.SetGlobalBuffer(reinterpret_cast<__gm__ OutT*>(w), wLen);
        idxGm_.SetGlobalBuffer(reinterpret_cast<__gm__ IdxT*>(idx), tiling_.batch);
        yGm_.SetGlobalBuffer(reinterpret_cast<__gm__ OutT*>(y), static_cast<uint64_t>(tiling_.batch) * tiling_.hiddenFull);
        statusGm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(status), tiling_.batch);

        const uint32_t rowStride = RowStride(maxRank);
        const uint32_t tile = tiling_.tileH;
        pipe_.InitBuffer(wQue_, kBufferNum, tile * rowStride * sizeof(OutT));
        pipe_.InitBuffer(wFloatBuf_, tile * rowStride * sizeof(AccT));
        pipe_.InitBuffer(xRowBuf_, rowStride * sizeof(AccT));
        pipe_.InitBuffer(yInQue_, 1, tile * sizeof(OutT));
        pipe_.InitBuffer(yOutQue_, 1, tile * sizeof(OutT));
        pipe_.InitBuffer(sumBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(partBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(yFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(statusBuf_, kBlockBytes);
    }

    __aicore__ inline void Process()
    {
        const uint32_t tasks = tiling_.batch * tiling_.hSplit;
        for (uint32_t task = GetBlockIdx(); task < tasks; task += GetBlockNum()) {
            const uint32_t row = task / tiling_.hSplit;
            const uint32_t chunk = task % tiling_.hSplit;
            const IdxT lora = idxGm_.GetValue(row);
            const bool bad = lora >= static_cast<IdxT>(tiling_.numLoras);
            if (chunk == 0) {
                cold::WriteWord(statusGm_, row,
                                bad ? (COLD_STATUS_FAULT | (COLD_STATUS_BAD_ADAPTER_INDEX << 24)) : 0u,
                                statusBuf_.Get<uint32_t>());
            }
            const uint32_t h0 = chunk * tiling_.hPerTask;
            if (lora < 0 || bad || h0 >= tiling_.hiddenOut) {
                continue;
            }
            const uint32_t h1 = cold::Min(h0 + tiling_.hPerTask, tiling_.hiddenOut);
            for (uint32_t j = 0; j < numSegments_; ++j) {
                const BgmvExpandSegment& seg = segments_[j];
                const uint32_t from = h0 > seg.rowStart ? h0 : seg.rowStart;
                const uint32_t to = cold::Min(h1, seg.rowStart + seg.rows);
                if (from < to) {
                    ProcessSegment(static_cast<uint32_t>(lora), row, j, from, to);
                }
            }
        }
    }

private:
    // Rank lanes per weight row in UB: DataCopyPad pads each row of rank 2-byte elements to 32 bytes.
    __aicore__ static inline uint32_t RowStride(uint32_t rank) { return cold::CeilDiv(rank, kRowAlign) * kRowAlign; }

    // Output rows from..to of the task's row, all inside segment j.
    __aicore__ inline void ProcessSegment(uint32_t lora, uint32_t row, uint32_t j, uint32_t from, uint32_t to)
    {
        const BgmvExpandSegment& seg = segments_[j];
        const uint32_t stride = RowStride(seg.rank);
        LoadX(row, seg);
        for (uint32_t h = from; h < to; h += tiling_.tileH) {
            const uint32_t rows = cold::Min(tiling_.tileH, to - h);
            CopyIn(lora, row, j, h, rows);
            Compute(rows, seg.rank, stride);
            CopyOut(row, h, rows);
        }
    }

    // x[row]'s lanes of segment seg into xRow.
    __aicore__ inline void LoadX(uint32_t row, const BgmvExpandSegment& seg)
    {
        LocalTensor<AccT> xRow = xRowBuf_.Get<AccT>();
        PipeBarrier<PIPE_ALL>();  // V -> MTE2: the previous Mul may still read xRow
        DataCopyPad(xRow, xGm_[static_cast<uint64_t>(row) * tiling_.rank + seg.rankStart],
                    DataCopyExtParams(1, seg.rank * sizeof(AccT), 0, 0, 0),
                    DataCopyPadExtParams<AccT>(false, 0, 0, 0.0f));
        PipeBarrier<PIPE_ALL>();  // MTE2 -> V
    }

    __aicore__ inline void CopyIn(uint32_t lora, uint32_t row, uint32_t j, uint32_t h, uint32_t rows)
    {
        const BgmvExpandSegment& seg = segments_[j];
        LocalTensor<OutT> wLocal = wQue_.AllocTensor<OutT>();
        const uint64_t offset =
            wOffset_[j] + (static_cast<uint64_t>(lora) * seg.rows + (h - seg.rowStart)) * seg.rank;
        // rows blocks of rank elements, each landing on its own 32-byte-aligned row (RowStride).
        DataCopyPad(wLocal, wGm_[offset], DataCopyExtParams(static_cast<uint16_t>(rows), seg.rank * sizeof(OutT), 0, 0, 0),
                    DataCopyPadExtParams<OutT>(false, 0, 0, OutT(0.0f)));
        wQue_.EnQue(wLocal);
        if (tiling_.addInputs != 0) {
            LocalTensor<OutT> yLocal = yInQue_.AllocTensor<OutT>();
            DataCopyPad(yLocal, yGm_[YOffset(row, h)], DataCopyExtParams(1, rows * sizeof(OutT), 0, 0, 0),
                        DataCopyPadExtParams<OutT>(false, 0, 0, OutT(0.0f)));
            yInQue_.EnQue(yLocal);
        }
    }

    __aicore__ inline void Compute(uint32_t rows, uint32_t rank, uint32_t stride)
    {
        LocalTensor<OutT> wLocal = wQue_.DeQue<OutT>();
        LocalTensor<AccT> wFloat = wFloatBuf_.Get<AccT>();
        LocalTensor<AccT> sum = sumBuf_.Get<AccT>();
        const int32_t count = static_cast<int32_t>(rows * stride);
        Cast(wFloat, wLocal, RoundMode::CAST_NONE, count);
        wQue_.FreeTensor(wLocal);
        PipeBarrier<PIPE_V>();
        // Every weight row times the one x row: a repeat per output row, x's repeat stride 0 (the broadcast
        // of asc-devkit's RmsNorm, impl/adv_api/detail/normalization/rmsnorm/rmsnorm_common_impl.h), one call per
        // 64-lane chunk of the rank. Rows are stride * 4 / 32 blocks apart (<= 16: the rank is <= 128).
        LocalTensor<AccT> xRow = xRowBuf_.Get<AccT>();
        const uint8_t rowBlocks = static_cast<uint8_t>(stride * sizeof(AccT) / kBlockBytes);
        for (uint32_t r0 = 0; r0 < rank; r0 += kRankChunk) {
            // The chunks' lanes interleave within one span of rows; ordered as if they overlapped (the emulator's
            // pipe model sees a strided operand as its span). Only ranks above 64 have a second chunk.
            if (r0 > 0) {
                PipeBarrier<PIPE_V>();
            }
            Mul(wFloat[r0], wFloat[r0], xRow[r0], cold::Min(rank - r0, kRankChunk), static_cast<uint8_t>(rows),
                BinaryRepeatParams(1, 1, 1, rowBlocks, rowBlocks, 0));
        }
        PipeBarrier<PIPE_V>();
        ReduceRows(sum, wFloat, rows, rank, stride);
        if (tiling_.addInputs != 0) {
            LocalTensor<OutT> yLocal = yInQue_.DeQue<OutT>();
            LocalTensor<AccT> yFloat = yFloatBuf_.Get<AccT>();
            Cast(yFloat, yLocal, RoundMode::CAST_NONE, rows);
            yInQue_.FreeTensor(yLocal);
            PipeBarrier<PIPE_V>();
            Add(sum, sum, yFloat, static_cast<int32_t>(rows));
        }
        LocalTensor<OutT> out = yOutQue_.AllocTensor<OutT>();
        PipeBarrier<PIPE_V>();
        Cast(out, sum, RoundMode::CAST_RINT, rows);
        yOutQue_.EnQue(out);
    }

    // sum[i] = sum of the first `rank` lanes of product row i. One WholeReduceSum repeat per output row (rows
    // are stride * 4 / 32 blocks apart) and per 64-lane chunk of the rank; chunk sums added in f32. The pad lanes
    // past the rank (DataCopyPad's dummy copies of a row's first element, or never written) are never inside a
    // mask.
    __aicore__ inline void ReduceRows(const LocalTensor<AccT>& sum, const LocalTensor<AccT>& prod, uint32_t rows,
                                      uint32_t rank, uint32_t stride)
    {
        const int32_t repStride = static_cast<int32_t>(stride * sizeof(AccT) / kBlockBytes);
        const int32_t reps = static_cast<int32_t>(rows);
        WholeReduceSum(sum, prod, static_cast<int32_t>(cold::Min(rank, kRankChunk)), reps, 1, 1, repStride);
        LocalTensor<AccT> part = partBuf_.Get<AccT>();
        for (uint32_t r0 = kRankChunk; r0 < rank; r0 += kRankChunk) {
            // prod[r0] starts 256 bytes into the row: 32-byte aligned.
            WholeReduceSum(part, prod[r0], static_cast<int32_t>(cold::Min(rank - r0, kRankChunk)), reps, 1, 1,
                           repStride);
            PipeBarrier<PIPE_V>();
            Add(sum, sum, part, reps);
        }
    }

    __aicore__ inline void CopyOut(uint32_t row, uint32_t h, uint32_t rows)
    {
        LocalTensor<OutT> out = yOutQue_.DeQue<OutT>();
        DataCopyPad(yGm_[YOffset(row, h)], out, DataCopyExtParams(1, rows * sizeof(OutT), 0, 0, 0));
        yOutQue_.FreeTensor(out);
    }

    __aicore__ inline uint64_t YOffset(uint32_t row, uint32_t h) const
    {
        return static_cast<uint64_t>(row) * tiling_.hiddenFull + tiling_.sliceOffset + h;
    }

    BgmvExpandTiling tiling_;
    uint32_t numSegments_ = 0;  // 1 when B is dense
    BgmvExpandSegment segments_[COLD_EXPAND_MAX_SEGMENTS];
    uint64_t wOffset_[COLD_EXPAND_MAX_SEGMENTS] = {};  // element offset of each segment's weights in Bw
    TPipe pipe_;
    TQue<TPosition::VECIN, kBufferNum> wQue_;
    TQue<TPosition::VECIN, 1> yInQue_;
    TQue<TPosition::VECOUT, 1> yOutQue_;
    TBuf<TPosition::VECIN> xRowBuf_;     // DataCopyPad's target: VECIN or VECOUT on Atlas A2
    TBuf<TPosition::VECOUT> statusBuf_;  // and its source
    TBuf<TPosition::VECCALC> wFloatBuf_, sumBuf_, partBuf_, yFloatBuf_;
    GlobalTensor<AccT> xGm_;
    GlobalTensor<OutT> wGm_, yGm_;
    GlobalTensor<IdxT> idxGm_;
    GlobalTensor<uint32_t> statusGm_;
};

#define BGMV_EXPAND_ENTRY(SUFFIX, TYPE)                                                                        \
    extern "C" __global__ __aicore__ void bgmv_expand_##SUFFIX(GM_ADDR x, GM_ADDR w, GM_ADDR idx, GM_ADDR y,    \
                                                               GM_ADDR status, GM_ADDR tiling)                 \
    {                                                                                                          \
        BgmvExpand<TYPE> op;                                                                                   \
        op.Init(x, w, idx, y, status, tiling);                                                                 \
        op.Process();                                                                                          \
    }

BGMV_EXPAND_ENTRY(f16, half)
BGMV_EXPAND_ENTRY(bf16, bfloat16_t)
