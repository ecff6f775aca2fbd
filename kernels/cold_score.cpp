// cold_score: contrastive decoding score, mask and argmax over logits e, a [N, V] (f16, bf16, f32):
//   M = max_j e[j];  keep(i) = e[i] >= M + ln(alpha)   (threshold computed in f32)
//   score(i) = (1 + beta) e[i] - beta a[i] if keep(i) else -inf      (f32: Muls, Muls, Sub)
//   token = argmax score (lowest index on ties), best = score[token]; optional score row f32 [N, V].
//   A row with NaN or inf anywhere in e or a gets token -1, best NaN, status NON_FINITE: detected as
//   sum(e - e) + sum(a - a) != 0 (x - x is 0 for finite x and NaN otherwise).
//   A row of finite logits whose winning f32 score is not finite (a kept score NaN or +inf, beta too
//   large for the logits, or every kept score -inf) gets token -2, best NaN, status SCORE_OVERFLOW
//   (docs/SEMANTICS.md section 1). For that, NaN ranks above every number in the argmax (as ReduceMax
//   propagates it), so an overflowed kept score always reaches the row's winner.
// Softmax is never formed: argmax is invariant to the per-row constant.
//
// Tokens only (writeScores = 0): ONE pass over e and a with a running maximum. Each tile is scored
// against the threshold known so far (running max + ln(alpha), never above the final one) and leaves a
// record in UB: its max m_t, its winner b_t, that winner's index and e value. At the end of the range,
// with the final threshold thr: a tile with m_t < thr holds nothing; a tile whose winner has e >= thr is
// exact (the final mask is a subset of the one it was scored with and contains its winner); only the
// other tiles ("dirty": scored before the max was seen, winner now masked) can hide the answer, and they
// are re-read (e and a) only when their b_t, an upper bound, could still beat the best exact winner.
// Tiles after the one holding the max are never dirty, so on real and random logits re-reads are rare.
// With the score row (writeScores = 1): a max pass over e, then the fused pass that writes the row
// (every score needs the final threshold); e stays resident in UB between the two when it fits.
//
// Work split (tiling.splits = S):
//   S = 1: one launch, cold_score_<dt>; a task is a row.
//   S > 1 (rows < cores, so one request uses the whole chip): three launches on one stream sharing a
//          workspace of one 32-byte record per (row, chunk) {best, idx, finite, max, eAt}:
//          cold_local_<dt>   tokens only: the one-pass scan above on the chunk (its own max); with the
//                            score row: the chunk max only;
//          cold_score_<dt>   reads the row's S maxima (strided copy, 4 bytes each): tokens only, a chunk
//                            rescans (e and a) only when dirty against the row threshold, and clears its
//                            record (best -inf) when empty against it (max below it: its local winner is
//                            masked, yet the reduce would take it); with the score row, scores its chunk
//                            and writes it;
//          cold_reduce       per row: lowest-index best of the S records, finite sum, outputs.
//          Launch order on the stream replaces cross-core synchronisation.
// Minimal traffic: N V (s_e + s_a) + 12 N (token, best) + 4 N (status) [+ 4 N V scores].
// This kernel moves, besides the minimum, the tiling once per block and launch, and:
//   tokens only: the dirty tiles (chunks when S > 1) that could win, re-read; S > 1: 20 (local) +
//     4 S + 20 (score) + 12 (reduce) bytes of workspace per chunk (+ 8 for a rescanned or emptied chunk);
//   score row, S = 1 resident: nothing; not resident: e once more (ratio <= 4/3 for f32, 5/4 for 16-bit);
//   score row, S > 1: e once more + 4 + 4 S + 12 + 12 bytes of workspace per chunk.
// UB (tileLen = 2048): e 2 x tile s + a 2 x tile s + scores (2 tiles f32 with the score row, else 1) +
// three f32 tiles + mask / reduce work / words < 3 KiB, + 16 bytes per tile of the range (tokens only)
// or the resident row (V s, score row with S = 1): f16 tokens only about 51 KiB + V / 128 bytes.
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
    static constexpr uint32_t kMaxSplits = 64;   // chunk records of a row fit one 2 KiB UB buffer
    static constexpr uint32_t kRecordWords = 8;  // one workspace record = one 32-byte block
    // Record word offsets: the reduce reads the first three (one 12-byte block per chunk).
    static constexpr uint32_t kRecBest = 0, kRecIdx = 1, kRecFinite = 2, kRecMax = 3, kRecEAt = 4;
    // res (32 bytes): ReduceMax's value and index at 0 (8-byte aligned), ReduceSum's sum at element 4.
    static constexpr uint32_t kResSum = 4;

    __aicore__ inline void Init(GM_ADDR e, GM_ADDR a, GM_ADDR tokens, GM_ADDR best, GM_ADDR scores,
                                GM_ADDR status, GM_ADDR workspace, GM_ADDR tiling)
    {
        cold::LoadTiling(tiling_, tiling);
        const uint64_t nv = static_cast<uint64_t>(tiling_.rows) * tiling_.vocab;
        eGm_.SetGlobalBuffer(reinterpret_cast<__gm__ InT*>(e), Span(tiling_.eRowStride));
        aGm_.SetGlobalBuffer(reinterpret_cast<__gm__ InT*>(a), Span(tiling_.aRowStride));
        tokensGm_.SetGlobalBuffer(reinterpret_cast<__gm__ TokenT*>(tokens), tiling_.rows);
        bestGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(best), tiling_.rows);
        scoresGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(scores), tiling_.writeScores != 0 ? nv : 0);
        statusGm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(status), tiling_.rows);
        wsGm_.SetGlobalBuffer(reinterpret_cast<__gm__ AccT*>(workspace),
                              tiling_.splits > 1 ? static_cast<uint64_t>(Tasks()) * kRecordWords : 0);

        const uint32_t tile = tiling_.tileLen;
        const uint32_t repeats = cold::CeilDiv(tile, kRepeatElems);
        if (tiling_.resident != 0) {
            pipe_.InitBuffer(residentBuf_, tiling_.chunkLen * sizeof(InT));
        }
        pipe_.InitBuffer(eQue_, kBufferNum, tile * sizeof(InT));
        pipe_.InitBuffer(aQue_, kBufferNum, tile * sizeof(InT));
        // Written score tiles double-buffer against MTE3; otherwise one working tile.
        pipe_.InitBuffer(scoreQue_, tiling_.writeScores != 0 ? kBufferNum : 1, tile * sizeof(AccT));
        pipe_.InitBuffer(eFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(aFloatBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(tmpBuf_, tile * sizeof(AccT));
        pipe_.InitBuffer(maskBuf_, cold::CeilDiv(tile, 8 * kBlockBytes) * kBlockBytes);
        pipe_.InitBuffer(workBuf_, 2 * cold::CeilDiv(2 * repeats, 8) * kBlockBytes);
        pipe_.InitBuffer(resBuf_, kBlockBytes);
        pipe_.InitBuffer(wordBuf_, kBlockBytes);
        pipe_.InitBuffer(recordsBuf_, kMaxSplits * kBlockBytes);
        if (tiling_.writeScores == 0) {
            tileCap_ = cold::CeilDiv(cold::CeilDiv(tiling_.chunkLen, tile), 8) * 8;
            pipe_.InitBuffer(tileRecBuf_, 4 * tileCap_ * sizeof(AccT));
        }
    }

    // splits == 1: the whole row, all outputs. Launch 2 of 3 (splits > 1): one chunk against its row's
    // threshold; its record updated when it changed.
    __aicore__ inline void ProcessScore()
    {
        for (uint32_t task = GetBlockIdx(); task < Tasks(); task += GetBlockNum()) {
            const uint32_t row = task / tiling_.splits;
            const uint32_t v0 = ChunkStart(task);
            const uint32_t len = ChunkLen(task);
            if (tiling_.splits == 1) {
                Winner w;
                if (tiling_.writeScores != 0) {
                    residentFilled_ = false;  // the max pass fills the resident row, the score pass reads it
                    const float rowMax = ChunkMax(row, v0, len);
                    residentFilled_ = true;
                    w = ScoreRange(row, v0, len, rowMax + tiling_.lnAlpha, true);
                } else {
                    w = OnePass(row, v0, len);
                }
                WriteRow(row, w.idx, w.best, w.finite);
            } else if (tiling_.writeScores != 0) {
                const Winner w = ScoreRange(row, v0, len, RowMaxFromWorkspace(row) + tiling_.lnAlpha, true);
                WriteRecord(task, w, 3);  // best, idx, finite
            } else {
                ResolveChunk(task, row, v0, len);
            }
        }
    }

    // Launch 1 of 3 (splits > 1): per chunk, the one-pass scan (tokens only) or the chunk max.
    __aicore__ inline void ProcessLocal()
    {
        for (uint32_t task = GetBlockIdx(); task < Tasks(); task += GetBlockNum()) {
            const uint32_t row = task / tiling_.splits;
            if (tiling_.writeScores != 0) {
                cold::WriteValue(wsGm_, task * kRecordWords + kRecMax, ChunkMax(row, ChunkStart(task), ChunkLen(task)),
                                 wordBuf_.Get<AccT>());
            } else {
                const Winner w = OnePass(row, ChunkStart(task), ChunkLen(task));
                WriteRecord(task, w, 5);  // best, idx, finite, max, eAt
            }
        }
    }

    // Launch 3 of 3 (splits > 1): per row, the lowest-index best of the chunk records.
    __aicore__ inline void ProcessReduce()
    {
        const uint32_t s = tiling_.splits;
        for (uint32_t row = GetBlockIdx(); row < tiling_.rows; row += GetBlockNum()) {
            // S blocks of 12 bytes (best, idx, finite), 20 bytes apart in GM, 32 bytes apart in UB.
            LocalTensor<AccT> rec = recordsBuf_.Get<AccT>();
            DataCopyPad(rec, wsGm_[row * s * kRecordWords],
                        DataCopyExtParams(static_cast<uint16_t>(s), 3 * sizeof(AccT),
                                          (kRecordWords - 3) * sizeof(AccT), 0, 0),
                        DataCopyPadExtParams<AccT>());
            PipeBarrier<PIPE_ALL>();
            Winner w;
            for (uint32_t c = 0; c < s; ++c) {
                const float b = rec.GetValue(c * kRecordWords + kRecBest);
                w.finite += rec.GetValue(c * kRecordWords + kRecFinite);
                const int32_t idx = static_cast<int32_t>(rec.ReinterpretCast<uint32_t>().GetValue(c * kRecordWords + kRecIdx));
                Offer(w, b, idx, cold::kNaN);  // chunks in index order: an equal later chunk never wins
            }
            WriteRow(row, w.idx, w.best, w.finite);
        }
    }

private:
    struct Winner {
        float best = cold::kNegInf;
        int64_t idx = -1;           // index in the row; -1: nothing kept
        float eAt = cold::kNaN;     // e[idx] (f32)
        float finite = 0.0f;        // sum(e - e) + sum(a - a) over the range
        float max = cold::kNegInf;  // max e over the range (one-pass scan only)
    };

    // Whether a candidate (score `best` at `idx`) beats `w`: a higher score, or an equal one at a lower
    // index; NaN (an overflowed score) above every number, so it is never dropped on the way to the row.
    __aicore__ inline static bool Beats(float best, int64_t idx, const Winner& w)
    {
        const bool nan = best != best;
        const bool wNan = w.best != w.best;
        const bool lower = idx >= 0 && (w.idx < 0 || idx < w.idx);
        if (nan || wNan) {
            return nan && (!wNan || lower);
        }
        return best > w.best || (best == w.best && lower);
    }

    // Takes the candidate when it beats `w`.
    __aicore__ inline static void Offer(Winner& w, float best, int64_t idx, float eAt)
    {
        if (Beats(best, idx, w)) {
            w.best = best;
            w.idx = idx;
            w.eAt = eAt;
        }
    }

    __aicore__ inline uint32_t Tasks() const { return tiling_.rows * tiling_.splits; }
    __aicore__ inline uint32_t ChunkStart(uint32_t task) const { return (task % tiling_.splits) * tiling_.chunkLen; }
    __aicore__ inline uint32_t ChunkLen(uint32_t task) const
    {
        const uint32_t v0 = ChunkStart(task);
        return v0 >= tiling_.vocab ? 0 : cold::Min(tiling_.chunkLen, tiling_.vocab - v0);
    }

    __aicore__ inline float TileMax(const LocalTensor<AccT>& x, uint32_t n)
    {
        LocalTensor<AccT> res = resBuf_.Get<AccT>();
        PipeBarrier<PIPE_V>();  // x was just written by the vector unit
        ReduceMax(res, x, workBuf_.Get<AccT>(), static_cast<int32_t>(n), false);
        PipeBarrier<PIPE_ALL>();  // V -> S: the scalar unit reads the result
        const float m = res.GetValue(0);
        PipeBarrier<PIPE_ALL>();  // S -> V: the read lands before a later ReduceMax rewrites res
        return m;
    }

    __aicore__ inline static float MaxNaN(float m, float v) { return (v != v || m != m) ? cold::kNaN : cold::Max(m, v); }

    __aicore__ inline float ChunkMax(uint32_t row, uint32_t v0, uint32_t len)
    {
        float m = cold::kNegInf;
        for (uint32_t off = 0; off < len; off += tiling_.tileLen) {
            const uint32_t n = cold::Min(tiling_.tileLen, len - off);
            LocalTensor<AccT> eFloat = eFloatBuf_.Get<AccT>();
            LoadFloat(eFloat, eGm_, eQue_, Offset(row, v0 + off, tiling_.eRowStride), n,
                      tiling_.resident != 0 ? off : kNoResident);
            m = MaxNaN(m, TileMax(eFloat, n));  // NaN sticks (the row is flagged by the finite check)
        }
        return m;
    }

    __aicore__ inline float RowMaxFromWorkspace(uint32_t row)
    {
        // The row's S maxima: blocks of 4 bytes, one record apart in GM, 32 bytes apart in UB.
        const uint32_t s = tiling_.splits;
        LocalTensor<AccT> rec = recordsBuf_.Get<AccT>();
        DataCopyPad(rec, wsGm_[row * s * kRecordWords + kRecMax],
                    DataCopyExtParams(static_cast<uint16_t>(s), sizeof(AccT), (kRecordWords - 1) * sizeof(AccT), 0, 0),
                    DataCopyPadExtParams<AccT>());
        PipeBarrier<PIPE_ALL>();
        float m = cold::kNegInf;
        for (uint32_t c = 0; c < s; ++c) {
            m = MaxNaN(m, rec.GetValue(c * kRecordWords));
        }
        return m;
    }

    // Tokens only, S > 1: the chunk's local record (its winner under its own, lower threshold) against the
    // row threshold, as OnePass sorts its tiles: empty (max below it): the record is cleared, since the
    // reduce takes every record's best as it stands; exact (winner kept): it stands; dirty: rescanned.
    __aicore__ inline void ResolveChunk(uint32_t task, uint32_t row, uint32_t v0, uint32_t len)
    {
        const float threshold = RowMaxFromWorkspace(row) + tiling_.lnAlpha;
        LocalTensor<AccT> rec = wordBuf_.Get<AccT>();
        DataCopyPad(rec, wsGm_[task * kRecordWords], DataCopyExtParams(1, 5 * sizeof(AccT), 0, 0, 0),
                    DataCopyPadExtParams<AccT>());
        PipeBarrier<PIPE_ALL>();
        const float chunkMax = rec.GetValue(kRecMax);
        const float eAt = rec.GetValue(kRecEAt);
        if (chunkMax < threshold) {
            WriteRecord(task, Winner(), 2);  // best -inf, idx -1: nothing here survives the row's mask
        } else if (chunkMax >= threshold && !(eAt >= threshold)) {
            const Winner w = ScoreRange(row, v0, len, threshold, false);
            WriteRecord(task, w, 2);  // best, idx; the finite sum of the local pass stands
        }
    }

    // The tokens-only scan of [v0, v0 + len): one read of e and a, then re-reads of dirty tiles that could
    // still win (see the header). Returns the exact winner under the range's own maximum.
    __aicore__ inline Winner OnePass(uint32_t row, uint32_t v0, uint32_t len)
    {
        LocalTensor<AccT> recMax = tileRecBuf_.Get<AccT>();
        LocalTensor<AccT> recBest = recMax[tileCap_];
        LocalTensor<uint32_t> recIdx = recMax[2 * tileCap_].template ReinterpretCast<uint32_t>();
        LocalTensor<AccT> recEAt = recMax[3 * tileCap_];
        Winner w;
        uint32_t tiles = 0;
        for (uint32_t off = 0; off < len; off += tiling_.tileLen, ++tiles) {
            const uint32_t n = cold::Min(tiling_.tileLen, len - off);
            LocalTensor<AccT> eFloat = eFloatBuf_.Get<AccT>();
            LoadTile(row, v0 + off, n, w);
            const float tileMax = TileMax(eFloat, n);
            w.max = MaxNaN(w.max, tileMax);
            const Winner t = ScoreTile(n, w.max + tiling_.lnAlpha, false, row, v0 + off);
            recMax.SetValue(tiles, tileMax);
            recBest.SetValue(tiles, t.best);
            recIdx.SetValue(tiles, static_cast<uint32_t>(t.idx));
            recEAt.SetValue(tiles, t.eAt);
        }
        const float threshold = w.max + tiling_.lnAlpha;
        for (uint32_t t = 0; t < tiles; ++t) {  // exact tiles, in index order
            if (recMax.GetValue(t) >= threshold && recEAt.GetValue(t) >= threshold) {
                Offer(w, recBest.GetValue(t), v0 + t * tiling_.tileLen + recIdx.GetValue(t), recEAt.GetValue(t));
            }
        }
        for (uint32_t t = 0; t < tiles; ++t) {  // dirty tiles whose upper bound could still win
            const uint32_t start = v0 + t * tiling_.tileLen;
            const float bound = recBest.GetValue(t);
            if (recMax.GetValue(t) >= threshold && !(recEAt.GetValue(t) >= threshold) && Beats(bound, start, w)) {
                const Winner r = ScoreRange(row, start, cold::Min(tiling_.tileLen, v0 + len - start), threshold, false);
                Offer(w, r.best, r.idx, r.eAt);
            }
        }
        return w;
    }

    // Scores [v0, v0 + len) against `threshold` tile by tile (finite check, score, mask, argmax, and the
    // score row when `write`).
    __aicore__ inline Winner ScoreRange(uint32_t row, uint32_t v0, uint32_t len, float threshold, bool write)
    {
        Winner w;
        for (uint32_t off = 0; off < len; off += tiling_.tileLen) {
            const uint32_t n = cold::Min(tiling_.tileLen, len - off);
            LoadTile(row, v0 + off, n, w, off);  // `off` is the resident slot only when resident (v0 = 0)
            const Winner t = ScoreTile(n, threshold, write, row, v0 + off);
            Offer(w, t.best, t.idx < 0 ? -1 : static_cast<int64_t>(v0 + off) + t.idx, t.eAt);
        }
        return w;
    }

    // e and a of one tile into the f32 working tiles; adds the tile's finite check to w.finite.
    __aicore__ inline void LoadTile(uint32_t row, uint32_t v, uint32_t n, Winner& w, uint32_t residentOff = kNoResident)
    {
        const int32_t count = static_cast<int32_t>(n);
        LocalTensor<AccT> eFloat = eFloatBuf_.Get<AccT>();
        LocalTensor<AccT> aFloat = aFloatBuf_.Get<AccT>();
        LocalTensor<AccT> tmp = tmpBuf_.Get<AccT>();
        // ReduceSum's own slot of res: its result is stored by the scalar unit (dav_c220 ReduceSumImpl waits
        // for the vector unit first), so reading it needs no barrier, and no vector write ever lands there.
        LocalTensor<AccT> sum = resBuf_.Get<AccT>()[kResSum];
        LoadFloat(eFloat, eGm_, eQue_, Offset(row, v, tiling_.eRowStride), n,
                  tiling_.resident != 0 ? residentOff : kNoResident);
        LoadFloat(aFloat, aGm_, aQue_, Offset(row, v, tiling_.aRowStride), n, kNoResident);
        // (e - e) + a - a: exactly 0 when both are finite, NaN otherwise. Each vector step reads the previous
        // one's result: PIPE_V barriers, the first for the two ToFloat.
        PipeBarrier<PIPE_V>();
        Sub(tmp, eFloat, eFloat, count);
        PipeBarrier<PIPE_V>();
        Add(tmp, tmp, aFloat, count);
        PipeBarrier<PIPE_V>();
        Sub(tmp, tmp, aFloat, count);
        PipeBarrier<PIPE_V>();
        ReduceSum(sum, tmp, workBuf_.Get<AccT>(), count);
        w.finite += sum.GetValue(0);
    }

    // The masked score of the loaded tile against `threshold`: its winner (index within the tile), and
    // the tile written to the score row when `write`.
    __aicore__ inline Winner ScoreTile(uint32_t n, float threshold, bool write, uint32_t row, uint32_t v)
    {
        const int32_t count = static_cast<int32_t>(n);
        LocalTensor<AccT> eFloat = eFloatBuf_.Get<AccT>();
        LocalTensor<AccT> aFloat = aFloatBuf_.Get<AccT>();
        LocalTensor<AccT> tmp = tmpBuf_.Get<AccT>();
        LocalTensor<AccT> res = resBuf_.Get<AccT>();
        LocalTensor<AccT> score = scoreQue_.AllocTensor<AccT>();
        Muls(score, eFloat, 1.0f + tiling_.beta, count);
        Muls(tmp, aFloat, tiling_.beta, count);
        PipeBarrier<PIPE_V>();
        Sub(score, score, tmp, count);
        // Compares runs whole 256-byte repeats only (a partial one is skipped, its mask bits left stale), so it
        // covers the tile rounded up to 64; the bits past n are never read (Select and ReduceMax take n).
        LocalTensor<uint8_t> mask = maskBuf_.Get<uint8_t>();
        Compares(mask, eFloat, threshold, CMPMODE::GE, cold::CeilDiv(n, kRepeatElems) * kRepeatElems);
        Select(score, mask, score, cold::kNegInf, SELMODE::VSEL_TENSOR_SCALAR_MODE, n);  // barriers V inside
        PipeBarrier<PIPE_V>();
        ReduceMax(res, score, workBuf_.Get<AccT>(), count, true);
        PipeBarrier<PIPE_ALL>();  // V -> S
        Winner t;
        t.best = res.GetValue(0);
        const uint32_t at = res.ReinterpretCast<uint32_t>().GetValue(1);
        if (!(t.best == cold::kNegInf)) {  // a kept score, or NaN (the first one, where ReduceMax stopped)
            t.idx = at;
            t.eAt = eFloat.GetValue(at);
        }
        PipeBarrier<PIPE_ALL>();  // S -> V: the reads land before the next tile rewrites res and eFloat
        if (write) {
            scoreQue_.EnQue(score);
            CopyOutScores(row, v, n);
        } else {
            scoreQue_.FreeTensor(score);
        }
        return t;
    }

    __aicore__ inline void CopyOutScores(uint32_t row, uint32_t v, uint32_t n)
    {
        LocalTensor<AccT> score = scoreQue_.DeQue<AccT>();
        if (n % (kBlockBytes / sizeof(AccT)) == 0) {
            DataCopy(scoresGm_[Offset(row, v, tiling_.vocab)], score, n);
        } else {
            CopyOutScoresTail(score, row, v, n);
        }
        scoreQue_.FreeTensor(score);
    }

    // A tile whose byte length is not a multiple of 32 (the end of a row with V not a multiple of 8).
    __aicore__ inline void CopyOutScoresTail(const LocalTensor<AccT>& score, uint32_t row, uint32_t v, uint32_t n)
    {
        DataCopyPad(scoresGm_[Offset(row, v, tiling_.vocab)], score, DataCopyExtParams(1, n * sizeof(AccT), 0, 0, 0));
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
        const bool scored = best - best == 0.0f;  // the winning score is a number (not NaN or +-inf)
        const TokenT token = !finite ? -1 : !scored ? -2 : idx;
        const uint32_t status = !finite ? (COLD_STATUS_FAULT | (COLD_STATUS_NON_FINITE << 24))
                                : !scored ? (COLD_STATUS_FAULT | (COLD_STATUS_SCORE_OVERFLOW << 24))
                                          : 0u;
        cold::WriteValue(tokensGm_, row, token, wordBuf_.Get<TokenT>());
        cold::WriteValue(bestGm_, row, token >= 0 ? best : cold::kNaN, wordBuf_.Get<AccT>());
        cold::WriteValue(statusGm_, row, status,
                         wordBuf_.Get<uint32_t>());
    }

    // Element `v` of row `row` in a matrix whose rows are `stride` elements apart (the scores are dense;
    // the logits may be interleaved expert/amateur rows of one buffer).
    __aicore__ inline uint64_t Offset(uint32_t row, uint32_t v, uint32_t stride) const
    {
        return static_cast<uint64_t>(row) * stride + v;
    }

    // Elements a logits operand spans: rows - 1 strides and one row.
    __aicore__ inline uint64_t Span(uint32_t stride) const
    {
        return static_cast<uint64_t>(tiling_.rows - 1) * stride + tiling_.vocab;
    }

    // Writes the first `words` words of a record {best, idx, finite, max, eAt} for chunk `task`.
    __aicore__ inline void WriteRecord(uint32_t task, const Winner& w, uint32_t words)
    {
        LocalTensor<AccT> rec = wordBuf_.Get<AccT>();
        rec.SetValue(kRecBest, w.best);
        rec.ReinterpretCast<uint32_t>().SetValue(kRecIdx, static_cast<uint32_t>(w.idx));
        rec.SetValue(kRecFinite, w.finite);
        rec.SetValue(kRecMax, w.max);
        rec.SetValue(kRecEAt, w.eAt);
        PipeBarrier<PIPE_ALL>();  // scalar writes visible to MTE3
        DataCopyPad(wsGm_[task * kRecordWords], rec, DataCopyExtParams(1, words * sizeof(AccT), 0, 0, 0));
        PipeBarrier<PIPE_ALL>();
    }

    ColdScoreTiling tiling_;
    uint32_t tileCap_ = 0;  // tile records per range (tokens only)
    bool residentFilled_ = false;
    TPipe pipe_;
    TQue<TPosition::VECIN, kBufferNum> eQue_, aQue_;
    TQue<TPosition::VECOUT, kBufferNum> scoreQue_;
    // Copy targets and sources sit in VECIN / VECOUT: the routes DataCopy and DataCopyPad document for Atlas A2.
    TBuf<TPosition::VECIN> residentBuf_, recordsBuf_;
    TBuf<TPosition::VECOUT> wordBuf_;
    TBuf<TPosition::VECCALC> eFloatBuf_, aFloatBuf_, tmpBuf_, maskBuf_, workBuf_, resBuf_, tileRecBuf_;
    GlobalTensor<InT> eGm_, aGm_;
    GlobalTensor<TokenT> tokensGm_;
    GlobalTensor<AccT> bestGm_, scoresGm_, wsGm_;
    GlobalTensor<uint32_t> statusGm_;
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
    extern "C" __global__ __aicore__ void cold_local_##SUFFIX(GM_ADDR e, GM_ADDR a, GM_ADDR workspace,          \
                                                              GM_ADDR tiling)                                   \
    {                                                                                                           \
        ColdScore<TYPE> op;                                                                                     \
        op.Init(e, a, nullptr, nullptr, nullptr, nullptr, workspace, tiling);                                   \
        op.ProcessLocal();                                                                                      \
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
