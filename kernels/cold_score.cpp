// cold_score: contrastive decoding score, mask and argmax over logits e, a [N, V] (f16, bf16, f32):
//   M = max_j e[j];  keep(i) = e[i] >= M + ln(alpha)   (threshold computed in f32)
//   score(i) = (1 + beta) e[i] - beta a[i] if keep(i) else -inf      (f32: Muls, Muls, Sub)
//   token = argmax score (lowest index on ties), best = score[token]; optional score row f32 [N, V].
//   A row with NaN or inf anywhere in e or a gets token -1, best NaN, status NON_FINITE: detected as
//   sum(e - e) + sum(a - a) != 0 (x - x is 0 for finite x and NaN otherwise).
// Structure per row: a max pass over e, then one fused pass over e and a (finite check, score, mask,
// argmax, optional score write). Softmax is never formed: argmax is invariant to the per-row constant.
//
// Work split (tiling.splits = S):
//   S = 1: one launch, cold_score_<dt>; a task is a row. With tiling.resident the row's e stays in UB
//          after the max pass, so e and a are each read once.
//   S > 1 (rows < cores, so one request uses the whole chip): three launches on one stream sharing a
//          workspace of 4 sections (f32 chunk max, f32 chunk best, u32 chunk argmax, f32 chunk finite
//          sum; each N * S words): cold_rowmax_<dt> (chunk maxima), cold_score_<dt> (each chunk reads its
//          row's S maxima, scores its chunk, writes its winner), cold_reduce (per row: lowest-index best
//          of the S winners). Launch order on the stream replaces cross-core synchronisation.
// Minimal traffic: N V (s_e + s_a) + 12 N (token, best) + 4 N (status) [+ 4 N V scores].
// This kernel moves, besides the minimum: S = 1 resident: nothing but the tiling; S = 1 streamed: e once
// more (ratio <= 1.5); S > 1: e once more + N S (S + 3) 4 bytes of workspace words + 12 N S (reduce).
// UB for the default tiling (tileLen = 2048, f16, not resident): e 2 x 4 KiB + a 2 x 4 KiB + scores
// 2 x 8 KiB + three f32 tiles 24 KiB + mask / reduce work / words < 2 KiB = about 58 KiB; a resident row
// adds V s bytes (up to about 120 KiB: V = 61440 f16 or 30720 f32).
#include "kernel_common.h"

using namespace AscendC;

namespace cold {

// Writes one 4- or 8-byte value to gm[index] through a 32-byte UB scratch tensor.
template <typename V>
__aicore__ inline void WriteValue(const GlobalTensor<V>& gm, uint32_t index, V value, const LocalTensor<V>& scratch)
{
    scratch.SetValue(0, value);
    PipeBarrier<PIPE_ALL>();
    DataCopyPad(gm[index], scratch, DataCopyExtParams(1, sizeof(V), 0, 0, 0));
    PipeBarrier<PIPE_ALL>();
}

__aicore__ inline float Max(float a, float b) { return a > b ? a : b; }

constexpr float kNegInf = -__builtin_inff();
constexpr float kNaN = __builtin_nanf("");

}  // namespace cold

template <typename T>
class ColdScore {
public:
    using InT = T;
    using AccT = float;
    using TokenT = int64_t;

    static constexpr uint32_t kBufferNum = 2;    // double-buffered input and output tiles
    static constexpr uint32_t kRepeatElems = 64; // f32 elements per 256-byte repeat; tileLen is a multiple
    static constexpr uint32_t kBlockBytes = 32;
    static constexpr uint32_t kMaxSplits = 64;   // one 256-byte read of a row's chunk maxima

    __aicore__ inline void Init(GM_ADDR e, GM_ADDR a, GM_ADDR tokens, GM_ADDR best, GM_ADDR scores,
                                GM_ADDR status, GM_ADDR workspace, GM_ADDR tiling)
    {
        cold::LoadTiling(tiling_, tiling);
        const uint64_t nv = static_cast<uint64_t>(tiling_.rows) * tiling_.vocab;
        eGm_.SetGlobalBuffer(reinterpret_cast<__gm__ InT*>(e), nv);
        aGm_.SetGlobalBuffer(reinterpret_cast<__gm__ InT*>(a), nv);
        tokensGm_.SetGlobalBuffer(reinterpret_cast<__gm__ TokenT*>(tokens), tiling_.rows);
        bestGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(best), tiling_.rows);
        scoresGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(scores), tiling_.writeScores != 0 ? nv : 0);
        statusGm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(status), tiling_.rows);
        BindWorkspace(workspace);

        const uint32_t tile = tiling_.tileLen;
        const uint32_t repeats = cold::CeilDiv(tile, kRepeatElems);
        if (tiling_.resident != 0) {
            pipe_.InitBuffer(residentBuf_, tiling_.chunkLen * sizeof(InT));
        }
        pipe_.InitBuffer(eQue_, kBufferNum, tile * sizeof(InT));
        pipe_.InitBuffer(aQue_, kBufferNum, tile * sizeof(InT));
        pipe_.InitBuffer(scoreQue_, kBufferNum, tile * sizeof(AccT));
        pipe_.InitBuffer(eFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(aFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(tmpBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(maskBuf_, cold::CeilDiv(tile, 8 * kBlockBytes) * kBlockBytes);
        pipe_.InitBuffer(workBuf_, 2 * cold::CeilDiv(2 * repeats, 8) * kBlockBytes);
        pipe_.InitBuffer(resBuf_, kBlockBytes);
        pipe_.InitBuffer(wordBuf_, kBlockBytes);
        pipe_.InitBuffer(maximaBuf_, kMaxSplits * sizeof(AccT));
    }

    // Launch 1 of 3 (splits > 1): the maximum of e over each (row, chunk).
    __aicore__ inline void ProcessRowMax()
    {
        for (uint32_t task = GetBlockIdx(); task < Tasks(); task += GetBlockNum()) {
            const float m = ChunkMax(task / tiling_.splits, ChunkStart(task), ChunkLen(task));
            cold::WriteValue(maxGm_, task, m, wordBuf_.Get<AccT>());
        }
    }

    // splits == 1: the whole row. Launch 2 of 3 (splits > 1): one chunk against its row's maximum.
    __aicore__ inline void ProcessScore()
    {
        for (uint32_t task = GetBlockIdx(); task < Tasks(); task += GetBlockNum()) {
            const uint32_t row = task / tiling_.splits;
            const uint32_t v0 = ChunkStart(task);
            const uint32_t len = ChunkLen(task);
            residentFilled_ = false;  // the max pass fills the resident chunk, the score pass reads it
            const float rowMax = tiling_.splits == 1 ? ChunkMax(row, v0, len) : RowMaxFromWorkspace(row);
            residentFilled_ = true;
            ScoreChunk(row, v0, len, rowMax + tiling_.lnAlpha);
            if (tiling_.splits == 1) {
                WriteRow(row, bestIdx_, best_, finiteSum_);
            } else {
                cold::WriteValue(winScoreGm_, task, best_, wordBuf_.Get<AccT>());
                cold::WriteValue(winIdxGm_, task, static_cast<uint32_t>(bestIdx_), wordBuf_.Get<uint32_t>());
                cold::WriteValue(finiteGm_, task, finiteSum_, wordBuf_.Get<AccT>());
            }
        }
    }

    // Launch 3 of 3 (splits > 1): per row, the lowest-index best of the chunk winners.
    __aicore__ inline void ProcessReduce()
    {
        const uint32_t s = tiling_.splits;
        for (uint32_t row = GetBlockIdx(); row < tiling_.rows; row += GetBlockNum()) {
            LocalTensor<AccT> scoresLocal = maximaBuf_.Get<AccT>();
            const DataCopyExtParams params(1, s * sizeof(AccT), 0, 0, 0);
            float best = cold::kNegInf;
            int64_t bestIdx = -1;
            float finite = 0.0f;
            DataCopyPad(scoresLocal, winScoreGm_[row * s], params, DataCopyPadExtParams<AccT>());
            PipeBarrier<PIPE_ALL>();
            uint32_t bestChunk = s;
            for (uint32_t c = 0; c < s; ++c) {
                if (scoresLocal.GetValue(c) > best) {  // strictly: an equal later chunk has higher indices
                    best = scoresLocal.GetValue(c);
                    bestChunk = c;
                }
            }
            DataCopyPad(scoresLocal, finiteGm_[row * s], params, DataCopyPadExtParams<AccT>());
            PipeBarrier<PIPE_ALL>();
            for (uint32_t c = 0; c < s; ++c) {
                finite += scoresLocal.GetValue(c);
            }
            if (bestChunk < s) {
                LocalTensor<uint32_t> idxLocal = maximaBuf_.Get<uint32_t>();
                DataCopyPad(idxLocal, winIdxGm_[row * s], params, DataCopyPadExtParams<uint32_t>());
                PipeBarrier<PIPE_ALL>();
                bestIdx = static_cast<int32_t>(idxLocal.GetValue(bestChunk));
            }
            WriteRow(row, bestIdx, best, finite);
        }
    }

private:
    __aicore__ inline void BindWorkspace(GM_ADDR workspace)
    {
        const uint64_t words = static_cast<uint64_t>(tiling_.rows) * tiling_.splits;
        const uint64_t section = tiling_.wsSection;
        maxGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(workspace), words);
        winScoreGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(workspace + section), words);
        winIdxGm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(workspace + 2 * section), words);
        finiteGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(workspace + 3 * section), words);
    }

    __aicore__ inline uint32_t Tasks() const { return tiling_.rows * tiling_.splits; }
    __aicore__ inline uint32_t ChunkStart(uint32_t task) const { return (task % tiling_.splits) * tiling_.chunkLen; }
    __aicore__ inline uint32_t ChunkLen(uint32_t task) const
    {
        const uint32_t v0 = ChunkStart(task);
        return v0 >= tiling_.vocab ? 0 : cold::Min(tiling_.chunkLen, tiling_.vocab - v0);
    }

    __aicore__ inline float ChunkMax(uint32_t row, uint32_t v0, uint32_t len)
    {
        float m = cold::kNegInf;
        for (uint32_t off = 0; off < len; off += tiling_.tileLen) {
            const uint32_t n = cold::Min(tiling_.tileLen, len - off);
            LocalTensor<AccT> eFloat = eFloatBuf_.Get<AccT>();
            LoadFloat(eFloat, eGm_, eQue_, Offset(row, v0 + off), n, tiling_.resident != 0 ? off : kNoResident);
            LocalTensor<AccT> res = resBuf_.Get<AccT>();
            ReduceMax(res, eFloat, workBuf_.Get<AccT>(), static_cast<int32_t>(n), false);
            PipeBarrier<PIPE_ALL>();
            const float tileMax = res.GetValue(0);
            m = (tileMax != tileMax) ? tileMax : cold::Max(m, tileMax);  // NaN sticks (the row is flagged later)
        }
        return m;
    }

    __aicore__ inline float RowMaxFromWorkspace(uint32_t row)
    {
        LocalTensor<AccT> maxima = maximaBuf_.Get<AccT>();
        DataCopyPad(maxima, maxGm_[row * tiling_.splits], DataCopyExtParams(1, tiling_.splits * sizeof(AccT), 0, 0, 0),
                    DataCopyPadExtParams<AccT>());
        PipeBarrier<PIPE_ALL>();
        float m = cold::kNegInf;
        for (uint32_t c = 0; c < tiling_.splits; ++c) {
            const float v = maxima.GetValue(c);
            m = (v != v || m != m) ? cold::kNaN : cold::Max(m, v);
        }
        return m;
    }

    // The fused pass: finite check, score, mask, argmax and the optional score write, tile by tile.
    __aicore__ inline void ScoreChunk(uint32_t row, uint32_t v0, uint32_t len, float threshold)
    {
        best_ = cold::kNegInf;
        bestIdx_ = -1;
        finiteSum_ = 0.0f;
        const float onePlusBeta = 1.0f + tiling_.beta;
        for (uint32_t off = 0; off < len; off += tiling_.tileLen) {
            const uint32_t n = cold::Min(tiling_.tileLen, len - off);
            const int32_t count = static_cast<int32_t>(n);
            LocalTensor<AccT> eFloat = eFloatBuf_.Get<AccT>();
            LocalTensor<AccT> aFloat = aFloatBuf_.Get<AccT>();
            LocalTensor<AccT> tmp = tmpBuf_.Get<AccT>();
            LocalTensor<AccT> res = resBuf_.Get<AccT>();
            LoadFloat(eFloat, eGm_, eQue_, Offset(row, v0 + off), n, tiling_.resident != 0 ? off : kNoResident);
            LoadFloat(aFloat, aGm_, aQue_, Offset(row, v0 + off), n, kNoResident);
            LocalTensor<AccT> score = scoreQue_.AllocTensor<AccT>();
            Sub(tmp, eFloat, eFloat, count);
            Sub(score, aFloat, aFloat, count);
            Add(tmp, tmp, score, count);
            ReduceSum(res, tmp, workBuf_.Get<AccT>(), count);
            PipeBarrier<PIPE_ALL>();
            finiteSum_ += res.GetValue(0);
            Muls(score, eFloat, onePlusBeta, count);
            Muls(tmp, aFloat, tiling_.beta, count);
            Sub(score, score, tmp, count);
            LocalTensor<uint8_t> mask = maskBuf_.Get<uint8_t>();
            CompareScalar(mask, eFloat, threshold, CMPMODE::GE, n);
            Select(score, mask, score, cold::kNegInf, SELMODE::VSEL_TENSOR_SCALAR_MODE, n);
            ReduceMax(res, score, workBuf_.Get<AccT>(), count, true);
            PipeBarrier<PIPE_ALL>();
            const float tileBest = res.GetValue(0);
            if (tileBest > best_) {  // strictly: equal scores in later tiles have higher indices
                best_ = tileBest;
                bestIdx_ = static_cast<int64_t>(v0 + off) + res.ReinterpretCast<uint32_t>().GetValue(1);
            }
            if (tiling_.writeScores != 0) {
                scoreQue_.EnQue(score);
                CopyOutScores(row, v0 + off, n);
            } else {
                scoreQue_.FreeTensor(score);
            }
        }
    }

    __aicore__ inline void CopyOutScores(uint32_t row, uint32_t v, uint32_t n)
    {
        LocalTensor<AccT> score = scoreQue_.DeQue<AccT>();
        if (n % (kBlockBytes / sizeof(AccT)) == 0) {
            DataCopy(scoresGm_[Offset(row, v)], score, n);
        } else {
            CopyOutScoresTail(score, row, v, n);
        }
        scoreQue_.FreeTensor(score);
    }

    // A tile whose byte length is not a multiple of 32 (the end of a row with V not a multiple of 8).
    __aicore__ inline void CopyOutScoresTail(const LocalTensor<AccT>& score, uint32_t row, uint32_t v, uint32_t n)
    {
        DataCopyPad(scoresGm_[Offset(row, v)], score, DataCopyExtParams(1, n * sizeof(AccT), 0, 0, 0));
    }

    static constexpr uint32_t kNoResident = 0xffffffffu;

    // n elements of src[offset..] as f32 in dst. With a resident offset, the raw elements live in the
    // resident buffer at that offset: the first pass fills it, the second reads it without touching GM.
    template <typename Que>
    __aicore__ inline void LoadFloat(const LocalTensor<AccT>& dst, const GlobalTensor<InT>& src, Que& que,
                                     uint64_t offset, uint32_t n, uint32_t residentOff)
    {
        if (residentOff != kNoResident) {
            LocalTensor<InT> slot = residentBuf_.Get<InT>()[residentOff];
            if (!residentFilled_) {
                CopyIn(slot, src, offset, n);
                PipeBarrier<PIPE_ALL>();  // MTE2 -> V on a TBuf (no queue to synchronise it)
            }
            ToFloat(dst, slot, n);
            return;
        }
        LocalTensor<InT> local = que.template AllocTensor<InT>();
        CopyIn(local, src, offset, n);
        que.EnQue(local);
        local = que.template DeQue<InT>();
        ToFloat(dst, local, n);
        que.FreeTensor(local);
    }

    __aicore__ inline void CopyIn(const LocalTensor<InT>& dst, const GlobalTensor<InT>& src, uint64_t offset, uint32_t n)
    {
        if ((n * sizeof(InT)) % kBlockBytes == 0) {
            DataCopy(dst, src[offset], n);
        } else {
            CopyInTail(dst, src, offset, n);
        }
    }

    // The end of a row whose byte length is not a multiple of 32.
    __aicore__ inline void CopyInTail(const LocalTensor<InT>& dst, const GlobalTensor<InT>& src, uint64_t offset, uint32_t n)
    {
        DataCopyPad(dst, src[offset], DataCopyExtParams(1, n * sizeof(InT), 0, 0, 0),
                    DataCopyPadExtParams<InT>(false, 0, 0, InT(0.0f)));
    }

    __aicore__ inline void ToFloat(const LocalTensor<AccT>& dst, const LocalTensor<InT>& src, uint32_t n)
    {
        if constexpr (sizeof(InT) == sizeof(AccT)) {
            Muls(dst, src, 1.0f, static_cast<int32_t>(n));  // f32 input: a copy into the f32 working tile
        } else {
            Cast(dst, src, RoundMode::CAST_NONE, n);
        }
    }

    __aicore__ inline void WriteRow(uint32_t row, int64_t idx, float best, float finiteSum)
    {
        const bool finite = finiteSum == 0.0f;
        cold::WriteValue(tokensGm_, row, static_cast<TokenT>(finite ? idx : -1), wordBuf_.Get<TokenT>());
        cold::WriteValue(bestGm_, row, finite ? best : cold::kNaN, wordBuf_.Get<AccT>());
        cold::WriteValue(statusGm_, row, finite ? 0u : (COLD_STATUS_FAULT | (COLD_STATUS_NON_FINITE << 24)),
                         wordBuf_.Get<uint32_t>());
    }

    __aicore__ inline uint64_t Offset(uint32_t row, uint32_t v) const
    {
        return static_cast<uint64_t>(row) * tiling_.vocab + v;
    }

    ColdScoreTiling tiling_;
    float best_ = 0.0f;
    int64_t bestIdx_ = -1;
    float finiteSum_ = 0.0f;
    bool residentFilled_ = false;
    TPipe pipe_;
    TQue<TPosition::VECIN, kBufferNum> eQue_, aQue_;
    TQue<TPosition::VECOUT, kBufferNum> scoreQue_;
    TBuf<TPosition::VECCALC> residentBuf_, eFloatBuf_, aFloatBuf_, tmpBuf_, maskBuf_, workBuf_, resBuf_, wordBuf_,
        maximaBuf_;
    GlobalTensor<InT> eGm_, aGm_;
    GlobalTensor<TokenT> tokensGm_;
    GlobalTensor<AccT> bestGm_, scoresGm_, maxGm_, winScoreGm_, finiteGm_;
    GlobalTensor<uint32_t> statusGm_, winIdxGm_;
};

#define COLD_SCORE_ENTRY(SUFFIX, TYPE)                                                                          \
    extern "C" __global__ __aicore__ void cold_score_##SUFFIX(GM_ADDR e, GM_ADDR a, GM_ADDR tokens,             \
                                                              GM_ADDR best, GM_ADDR scores, GM_ADDR status,     \
                                                              GM_ADDR workspace, GM_ADDR tiling)                \
    {                                                                                                           \
        ColdScore<TYPE> op;                                                                                     \
        op.Init(e, a, tokens, best, scores, status, workspace, tiling);                                         \
        op.ProcessScore();                                                                                      \
    }                                                                                                           \
    extern "C" __global__ __aicore__ void cold_rowmax_##SUFFIX(GM_ADDR e, GM_ADDR workspace, GM_ADDR tiling)    \
    {                                                                                                           \
        ColdScore<TYPE> op;                                                                                     \
        op.Init(e, e, nullptr, nullptr, nullptr, nullptr, workspace, tiling);                                   \
        op.ProcessRowMax();                                                                                     \
    }

COLD_SCORE_ENTRY(f16, half)
COLD_SCORE_ENTRY(bf16, bfloat16_t)
COLD_SCORE_ENTRY(f32, float)

extern "C" __global__ __aicore__ void cold_reduce(GM_ADDR tokens, GM_ADDR best, GM_ADDR status, GM_ADDR workspace,
                                                  GM_ADDR tiling)
{
    ColdScore<float> op;
    op.Init(nullptr, nullptr, tokens, best, nullptr, status, workspace, tiling);
    op.ProcessReduce();
}
