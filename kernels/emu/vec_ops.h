// The vector instructions the kernels use, host side, with the signatures of asc-devkit
// include/basic_api/kernel_operator_vec_{vconv,binary,binary_scalar,duplicate,reduce,cmpsel}_intf.h.
// Each instruction processes 256 bytes per repeat; the counters count repeats and elements.
// Rules enforced, each a Fail() naming the call (docs/KERNELS.md, "Ascend C API surface", has the sources):
//   - every UB operand starts aligned (32 bytes; the reduction results as ReduceRepeat's table 3 says) and the
//     elements it touches lie inside the tensor; a destination and a source are disjoint or identical;
//   - repeat and stride limits of the level-0 calls: WholeReduceSum's repeatTime in 0..255 (uint8_t in the
//     instruction: a larger value would wrap), strides in 0..65535, mask in 0..64 (mask or repeatTime 0: no-op);
//     Mul's level-0 form takes repeatTime and its BinaryRepeatParams strides as uint8_t, as the vendor declares;
//   - Compares: count * sizeof(T) a whole number of 256-byte repeats (dav_c220 compares whole repeats only);
//   - ReduceMax: sharedTmpBuffer at least the size its page derives.
// Reduction order, as ReduceSum's page gives it for Atlas A2: a binary tree of adjacent pairs inside a repeat,
// the repeats' results added in order (emu::RepeatSum).
#ifndef ASCEND_COLD_EMU_VEC_OPS_H
#define ASCEND_COLD_EMU_VEC_OPS_H

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "tensor.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace AscendC {

enum class RoundMode { CAST_NONE = 0, CAST_RINT, CAST_FLOOR, CAST_CEIL, CAST_ROUND, CAST_TRUNC, CAST_ODD };
enum class CMPMODE : uint8_t { LT = 0, GT, EQ, LE, GE, NE };
enum class SELMODE : uint8_t { VSEL_CMPMASK_SPR = 0, VSEL_TENSOR_SCALAR_MODE, VSEL_TENSOR_TENSOR_MODE };

}  // namespace AscendC

namespace emu {

// A level-0 repeat count: 0..255 (uint8_t in the instruction; a larger value would wrap modulo 256).
inline void CheckRepeat(int64_t repeatTime, const char* what)
{
    if (repeatTime < 0 || repeatTime > 255) {
        Fail(std::string("repeat limit: ") + what + " repeatTime " + std::to_string(repeatTime) +
             " outside 0..255 (uint8_t on the device)");
    }
}

template <typename T>
float ToF(T v)
{
    return static_cast<float>(v);
}

inline void CountVector(uint64_t count, size_t elemBytes)
{
    EmuBlockCounters* c = Block().counters;
    c->vector_instrs += (count * elemBytes + 255) / 256;
    c->vector_elems += count;
}

template <typename T>
T* Elems(const AscendC::LocalTensor<T>& t, uint64_t count, const char* what)
{
    CheckUb(t, count, what);
    return t.Data();
}

// The tree on v[0..n), 1 <= n <= 64, in place: `addPairs(v, pairs)` sets v[i] = v[2i] + v[2i + 1] for i < pairs
// (in place is safe: slot i is written only after slots 2i and 2i + 1 were read), and an odd last element is
// carried up a level. Returns v[0].
template <typename V, typename AddPairs>
inline V PairTree(V* v, int32_t n, AddPairs addPairs)
{
    while (n > 1) {
        const int32_t pairs = n / 2;
        addPairs(v, pairs);
        if (n % 2 != 0) {
            v[pairs] = v[n - 1];
        }
        n = pairs + n % 2;
    }
    return v[0];
}

// The sum of one repeat's 1 <= n <= 64 f32 lanes as the vector unit adds them (ReduceDataBlock's page, "关键特性说明":
// adjacent pairs, then pairs of those). Carrying an odd last element up a level gives the same sums as the
// hardware's fixed 64-lane tree with the masked lanes left out.
// With SSE2 four pairs are added at once: the even and the odd lanes of eight inputs, in the same operand
// order as the scalar loop, so the sums are bit for bit the same.
inline float RepeatSum(const float* s, int32_t n)
{
    float v[64];
    std::memcpy(v, s, static_cast<size_t>(n) * sizeof(float));
    return PairTree(v, n, [](float* w, int32_t pairs) {
        int32_t i = 0;
#if defined(__SSE2__)
        for (; i + 4 <= pairs; i += 4) {
            const __m128 lo = _mm_loadu_ps(w + 2 * i);
            const __m128 hi = _mm_loadu_ps(w + 2 * i + 4);
            const __m128 even = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 odd = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
            _mm_storeu_ps(w + i, _mm_add_ps(even, odd));
        }
#endif
        for (; i < pairs; ++i) {
            w[i] = w[2 * i] + w[2 * i + 1];
        }
    });
}

#if defined(__SSE2__)
// RepeatSum of four repeats at once, bit for bit: lane j of the four repeats in one vector (4 x 4 transposes),
// then the same tree on vectors, so each repeat's sums are formed from the same operands in the same order.
// Measured per repeat against RepeatSum (g++ -O2, SSE2, a 248-repeat tile): 8 lanes 1.6 vs 5.0 ns, 16 lanes 2.8 vs
// 6.6 ns, 32 lanes 5.2 vs 11.0 ns; used from 8 lanes on (a rank-16 expand segment reduces 16).
inline void RepeatSum4(const float* const rep[4], int32_t n, float out[4])
{
    __m128 v[64];
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        __m128 r0 = _mm_loadu_ps(rep[0] + j), r1 = _mm_loadu_ps(rep[1] + j);
        __m128 r2 = _mm_loadu_ps(rep[2] + j), r3 = _mm_loadu_ps(rep[3] + j);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        v[j] = r0;
        v[j + 1] = r1;
        v[j + 2] = r2;
        v[j + 3] = r3;
    }
    for (; j < n; ++j) {
        v[j] = _mm_setr_ps(rep[0][j], rep[1][j], rep[2][j], rep[3][j]);
    }
    _mm_storeu_ps(out, PairTree(v, n, [](__m128* w, int32_t pairs) {
        for (int32_t i = 0; i < pairs; ++i) {
            w[i] = _mm_add_ps(w[2 * i], w[2 * i + 1]);
        }
    }));
}
#endif

// sharedTmpBuffer elements ReduceMax needs for `count` f32 elements (ReduceMax's page, "关键特性说明", with
// firstMaxRepeat = count / 64 and at least 1, as dav_c220's ReduceMax takes a short count as one repeat).
inline uint64_t ReduceMaxTmpElems(int32_t count, bool calIndex)
{
    constexpr uint64_t perBlock = 8, perRepeat = 64;
    auto roundUp = [](uint64_t v, uint64_t m) { return (v + m - 1) / m * m; };
    const uint64_t first = count / perRepeat > 0 ? count / perRepeat : 1;
    const uint64_t out1 = 2 * first;
    if (!calIndex) {
        return roundUp(out1, perBlock);
    }
    const uint64_t start2 = roundUp(out1, perBlock);
    const uint64_t out2 = roundUp(out1, perRepeat) / perRepeat * 2;
    const uint64_t end2 = roundUp(out2, perBlock);
    if (out2 <= 2) {
        return start2 + end2;
    }
    const uint64_t out3 = roundUp(out2, perRepeat) / perRepeat * 2;
    return start2 + end2 + roundUp(out3, perBlock);
}

// The position of the first maximum of s[0..n), n >= 1, or of the first NaN when there is one (NaN
// propagates, as in ReduceMax). Two passes: the maximum and whether any element is NaN, then the first
// position holding that value; with SSE2 both run four lanes at a time.
inline uint32_t FirstMaxIndex(const float* s, uint32_t n)
{
    uint32_t i = 0;
    float top = s[0];
    bool nan = false;
#if defined(__SSE2__)
    __m128 lanes = _mm_set1_ps(s[0]);
    __m128 unordered = _mm_setzero_ps();
    for (; i + 4 <= n; i += 4) {
        const __m128 v = _mm_loadu_ps(s + i);
        unordered = _mm_or_ps(unordered, _mm_cmpunord_ps(v, v));
        lanes = _mm_max_ps(lanes, v);
    }
    float lane[4];
    _mm_storeu_ps(lane, lanes);
    nan = _mm_movemask_ps(unordered) != 0;
    for (float v : lane) {
        top = v > top ? v : top;
    }
#endif
    for (; i < n; ++i) {
        nan |= s[i] != s[i];
        top = s[i] > top ? s[i] : top;
    }
    uint32_t at = 0;
#if defined(__SSE2__)
    const __m128 wanted = _mm_set1_ps(top);
    for (; at + 4 <= n; at += 4) {
        const __m128 v = _mm_loadu_ps(s + at);
        const int hits = _mm_movemask_ps(nan ? _mm_cmpunord_ps(v, v) : _mm_cmpeq_ps(v, wanted));
        if (hits != 0) {
            return at + static_cast<uint32_t>(__builtin_ctz(static_cast<unsigned>(hits)));
        }
    }
#endif
    while (nan ? !std::isnan(s[at]) : s[at] != top) {
        ++at;
    }
    return at;
}

}  // namespace emu

namespace AscendC {

// Cast: widening (half/bfloat16_t -> float) with CAST_NONE, narrowing (float -> half/bfloat16_t) with
// CAST_RINT (round half to even). Other pairs and modes are not emulated and Fail.
template <typename T, typename U>
void Cast(const LocalTensor<T>& dst, const LocalTensor<U>& src, const RoundMode& roundMode, const uint32_t count)
{
    constexpr bool widen = std::is_same<T, float>::value && !std::is_same<U, float>::value;
    constexpr bool narrow = std::is_same<U, float>::value && !std::is_same<T, float>::value;
    static_assert(widen || narrow, "the emulator implements Cast between float and half / bfloat16_t only");
    if ((widen && roundMode != RoundMode::CAST_NONE) || (narrow && roundMode != RoundMode::CAST_RINT)) {
        emu::Fail("Cast: round mode not emulated (CAST_NONE to widen, CAST_RINT to narrow)");
    }
    T* d = emu::Elems(dst, count, "Cast dst");
    const U* s = emu::Elems(src, count, "Cast src");
    emu::CheckOverlap(dst, count, src, count, "Cast");
    const emu::PipeOp op(emu::kPipeV);
    emu::Read(op, src, count, "Cast src");
    emu::Write(op, dst, count, "Cast dst");
    for (uint32_t i = 0; i < count; ++i) {
        d[i] = T(static_cast<float>(s[i]));
    }
    emu::CountVector(count, sizeof(T) > sizeof(U) ? sizeof(T) : sizeof(U));
}

#define ASCEND_COLD_EMU_BINARY(NAME, EXPR)                                                                         \
    template <typename T>                                                                                          \
    void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1,                   \
              const int32_t& count)                                                                                \
    {                                                                                                              \
        T* d = emu::Elems(dst, count, #NAME " dst");                                                               \
        const T* a = emu::Elems(src0, count, #NAME " src0");                                                       \
        const T* b = emu::Elems(src1, count, #NAME " src1");                                                       \
        emu::CheckOverlap(dst, count, src0, count, #NAME " (src0)");                                               \
        emu::CheckOverlap(dst, count, src1, count, #NAME " (src1)");                                               \
        const emu::PipeOp op(emu::kPipeV);                                                                         \
        emu::Read(op, src0, count, #NAME " src0");                                                                 \
        emu::Read(op, src1, count, #NAME " src1");                                                                 \
        emu::Write(op, dst, count, #NAME " dst");                                                                  \
        for (int32_t i = 0; i < count; ++i) {                                                                      \
            const float x = emu::ToF(a[i]);                                                                        \
            const float y = emu::ToF(b[i]);                                                                        \
            d[i] = T(EXPR);                                                                                        \
        }                                                                                                          \
        emu::CountVector(count, sizeof(T));                                                                        \
    }

ASCEND_COLD_EMU_BINARY(Add, x + y)
ASCEND_COLD_EMU_BINARY(Sub, x - y)
ASCEND_COLD_EMU_BINARY(Mul, x* y)
#undef ASCEND_COLD_EMU_BINARY

// Level-0 repeat parameters of a binary instruction (asc-devkit include/basic_api/kernel_struct_binary.h): block
// and repeat strides in 32-byte blocks, each a uint8_t.
struct BinaryRepeatParams {
    BinaryRepeatParams() {}
    BinaryRepeatParams(const uint8_t dstBlkStrideIn, const uint8_t src0BlkStrideIn, const uint8_t src1BlkStrideIn,
                       const uint8_t dstRepStrideIn, const uint8_t src0RepStrideIn, const uint8_t src1RepStrideIn)
        : dstBlkStride(dstBlkStrideIn),
          src0BlkStride(src0BlkStrideIn),
          src1BlkStride(src1BlkStrideIn),
          dstRepStride(dstRepStrideIn),
          src0RepStride(src0RepStrideIn),
          src1RepStride(src1RepStrideIn)
    {}
    uint8_t dstBlkStride = 1;
    uint8_t src0BlkStride = 1;
    uint8_t src1BlkStride = 1;
    uint8_t dstRepStride = 8;
    uint8_t src0RepStride = 8;
    uint8_t src1RepStride = 8;
};

}  // namespace AscendC

namespace emu {

// Where lane `j` of repeat `r` of a level-0 operand lies, in elements from the tensor's start.
template <typename T>
inline int64_t Level0Lane(int64_t r, int64_t j, uint8_t blkStride, uint8_t repStride)
{
    constexpr int64_t perBlock = 32 / sizeof(T);
    return (r * repStride + (j / perBlock) * blkStride) * perBlock + j % perBlock;
}

// Elements from the first to one past the last lane a level-0 operand touches.
template <typename T>
inline int64_t Level0Span(int64_t mask, int64_t repeatTime, uint8_t blkStride, uint8_t repStride)
{
    return Level0Lane<T>(repeatTime - 1, mask - 1, blkStride, repStride) + 1;
}

}  // namespace emu

namespace AscendC {

// Level-0 Mul, mask as a lane count (continuous mode): repeatTime repeats of the first `mask` lanes of a 256-byte
// repeat, each operand at its own block and repeat strides. A repeat stride of 0 reads the same lanes for every
// repeat (asc-devkit impl/adv_api/detail/normalization/rmsnorm/rmsnorm_common_impl.h broadcasts a row this way:
// src1RepStride = 0). Operands whose spans overlap must be the same lanes in the same layout (in place).
template <typename T, bool isSetMask = true>
void Mul(const LocalTensor<T>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, uint64_t mask,
         const uint8_t repeatTime, const BinaryRepeatParams& p)
{
    if (mask > 256 / sizeof(T)) {
        emu::Fail("Mul (level 0): mask " + std::to_string(mask) + " outside 0.." + std::to_string(256 / sizeof(T)));
    }
    if (repeatTime == 0 || mask == 0) {
        return;
    }
    const int64_t m = static_cast<int64_t>(mask);
    const int64_t dSpan = emu::Level0Span<T>(m, repeatTime, p.dstBlkStride, p.dstRepStride);
    const int64_t aSpan = emu::Level0Span<T>(m, repeatTime, p.src0BlkStride, p.src0RepStride);
    const int64_t bSpan = emu::Level0Span<T>(m, repeatTime, p.src1BlkStride, p.src1RepStride);
    T* d = emu::Elems(dst, dSpan, "Mul (level 0) dst");
    const T* a = emu::Elems(src0, aSpan, "Mul (level 0) src0");
    const T* b = emu::Elems(src1, bSpan, "Mul (level 0) src1");
    const bool inPlace = dst.UbOffset() == src0.UbOffset() && p.dstBlkStride == p.src0BlkStride &&
                         p.dstRepStride == p.src0RepStride;
    if (!inPlace) {
        emu::CheckOverlap(dst, dSpan, src0, aSpan, "Mul (level 0) (src0)");
    }
    const bool disjoint = dst.UbOffset() + dSpan * sizeof(T) <= src1.UbOffset() ||
                          src1.UbOffset() + bSpan * sizeof(T) <= dst.UbOffset();
    if (!disjoint) {
        emu::Fail("operand overlap: Mul (level 0) dst overlaps src1; a repeated source must be disjoint from dst");
    }
    const emu::PipeOp op(emu::kPipeV);
    emu::Read(op, src0, aSpan, "Mul (level 0) src0");
    emu::Read(op, src1, bSpan, "Mul (level 0) src1");
    emu::Write(op, dst, dSpan, "Mul (level 0) dst");
    for (int64_t r = 0; r < repeatTime; ++r) {
        if (p.dstBlkStride == 1 && p.src0BlkStride == 1 && p.src1BlkStride == 1) {
            // Contiguous lanes in every operand: the same products, in a loop the compiler vectorises.
            T* dr = d + emu::Level0Lane<T>(r, 0, 1, p.dstRepStride);
            const T* ar = a + emu::Level0Lane<T>(r, 0, 1, p.src0RepStride);
            const T* br = b + emu::Level0Lane<T>(r, 0, 1, p.src1RepStride);
            int64_t j = 0;
#if defined(__SSE2__)
            if constexpr (std::is_same<T, float>::value) {
                for (; j + 4 <= m; j += 4) {
                    _mm_storeu_ps(dr + j, _mm_mul_ps(_mm_loadu_ps(ar + j), _mm_loadu_ps(br + j)));
                }
            }
#endif
            for (; j < m; ++j) {
                dr[j] = T(emu::ToF(ar[j]) * emu::ToF(br[j]));
            }
            continue;
        }
        for (int64_t j = 0; j < m; ++j) {
            const float x = emu::ToF(a[emu::Level0Lane<T>(r, j, p.src0BlkStride, p.src0RepStride)]);
            const float y = emu::ToF(b[emu::Level0Lane<T>(r, j, p.src1BlkStride, p.src1RepStride)]);
            d[emu::Level0Lane<T>(r, j, p.dstBlkStride, p.dstRepStride)] = T(x * y);
        }
    }
    emu::CountVector(static_cast<uint64_t>(repeatTime) * mask, sizeof(T));
}

template <typename T, bool isSetMask = true>
void Muls(const LocalTensor<T>& dst, const LocalTensor<T>& src, const T& scalarValue, const int32_t& count)
{
    T* d = emu::Elems(dst, count, "Muls dst");
    const T* s = emu::Elems(src, count, "Muls src");
    emu::CheckOverlap(dst, count, src, count, "Muls");
    const emu::PipeOp op(emu::kPipeV);
    emu::Read(op, src, count, "Muls src");
    emu::Write(op, dst, count, "Muls dst");
    // The scalar is read once: through the reference, a store to d could (for the compiler) change it,
    // which would keep the loop scalar.
    const float k = emu::ToF(scalarValue);
    for (int32_t i = 0; i < count; ++i) {
        d[i] = T(emu::ToF(s[i]) * k);
    }
    emu::CountVector(count, sizeof(T));
}

template <typename T>
void Duplicate(const LocalTensor<T>& dst, const T& scalarValue, const int32_t& count)
{
    T* d = emu::Elems(dst, count, "Duplicate dst");
    emu::Write(emu::PipeOp(emu::kPipeV), dst, count, "Duplicate dst");
    for (int32_t i = 0; i < count; ++i) {
        d[i] = scalarValue;
    }
    emu::CountVector(count, sizeof(T));
}

// Level 2: dst[0] = max and, with calIndex, dst[1] = the lowest index holding it, as the bits of a uint32_t
// (ReduceMax's page and ReduceRepeat's "关键特性说明"). NaN propagates (the first NaN wins): what vcmax does with
// NaN is not documented, and the kernels flag a row holding one before they use its maximum. count 0: no-op.
template <typename T>
void ReduceMax(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count, bool calIndex = 0)
{
    static_assert(std::is_same<T, float>::value, "the emulator implements ReduceMax for float");
    if (count <= 0) {
        return;
    }
    const T* s = emu::Elems(src, count, "ReduceMax src");
    const uint64_t need = emu::ReduceMaxTmpElems(count, calIndex);
    if (need > sharedTmpBuffer.GetSize()) {
        emu::Fail("ReduceMax sharedTmpBuffer: " + std::to_string(count) + " elements" +
                  (calIndex ? " with the index" : "") + " need " + std::to_string(need) +
                  " elements of sharedTmpBuffer, the tensor has " + std::to_string(sharedTmpBuffer.GetSize()));
    }
    emu::CheckUb(sharedTmpBuffer, need, "ReduceMax sharedTmpBuffer");
    emu::CheckUb(dst, calIndex ? 2 : 1, "ReduceMax dst", calIndex ? 8 : 4);
    T* d = dst.Data();
    emu::CheckOverlap(dst, calIndex ? 2 : 1, src, count, "ReduceMax");
    // Modelled as one vector operation; on dav_c220 a count with a tail ends with scalar work on dst behind the
    // API's own flags, which only makes a kernel's V -> S barrier redundant, never wrong.
    const emu::PipeOp op(emu::kPipeV);
    emu::Read(op, src, count, "ReduceMax src");
    emu::Write(op, sharedTmpBuffer, need, "ReduceMax sharedTmpBuffer");
    emu::Write(op, dst, calIndex ? 2 : 1, "ReduceMax dst");
    const uint32_t at = emu::FirstMaxIndex(s, static_cast<uint32_t>(count));
    d[0] = s[at];
    if (calIndex) {
        std::memcpy(&d[1], &at, 4);
    }
    emu::CountVector(count, sizeof(T));
}

// Level 2 on Atlas A2: one vcadd in counter mode (dav_c220 ReduceSumImpl), sharedTmpBuffer unused (ReduceSum's
// page, 方式一: any size). Each 64-lane repeat summed as a tree, the repeats in order. count 0: no-op.
template <typename T, bool isSetMask = true>
void ReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count)
{
    static_assert(std::is_same<T, float>::value, "the emulator implements ReduceSum for float");
    if (count <= 0) {
        return;
    }
    const T* s = emu::Elems(src, count, "ReduceSum src");
    emu::CheckUb(sharedTmpBuffer, 0, "ReduceSum sharedTmpBuffer");
    emu::CheckUb(dst, 1, "ReduceSum dst", 4);
    T* d = dst.Data();
    emu::CheckOverlap(dst, 1, src, count, "ReduceSum");
    // dav_c220 ReduceSumImpl: vcadd into the accumulator, SetFlag/WaitFlag V_S, the scalar unit stores the sum
    // to dst, then S_V and S_MTE3 flags.
    emu::PipeModel& pipes = emu::Block().pipes;
    emu::Read(emu::PipeOp(emu::kPipeV), src, count, "ReduceSum src");
    pipes.Wait(emu::kPipeS, pipes.Set(emu::kPipeV));
    emu::Write(emu::PipeOp(emu::kPipeS), dst, 1, "ReduceSum dst");
    pipes.Wait(emu::kPipeV, pipes.Set(emu::kPipeS));
    pipes.Wait(emu::kPipeMte3, pipes.Set(emu::kPipeS));
    float total = 0.0f;
    for (int32_t base = 0; base < count; base += 64) {
        total += emu::RepeatSum(s + base, count - base < 64 ? count - base : 64);
    }
    d[0] = total;
    emu::CountVector(count, sizeof(T));
}

// Level 0 (ReduceRepeat<SUM> in the current documents): one sum of `mask` elements per repeat, written to
// dst[r * dstRepStride] (dst 4-byte aligned, stride in elements); src strides in 32-byte blocks, each in 0..65535;
// repeatTime in 0..255; mask or repeatTime 0: no-op.
template <typename T, bool isSetMask = true>
void WholeReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t mask,
                    const int32_t repeatTime, const int32_t dstRepStride, const int32_t srcBlkStride,
                    const int32_t srcRepStride)
{
    static_assert(std::is_same<T, float>::value, "the emulator implements WholeReduceSum for float");
    constexpr int32_t perBlock = 32 / sizeof(T);
    emu::CheckRepeat(repeatTime, "WholeReduceSum");
    for (const int32_t stride : {dstRepStride, srcBlkStride, srcRepStride}) {
        if (stride < 0 || stride > 65535) {
            emu::Fail("stride limit: WholeReduceSum stride " + std::to_string(stride) + " outside 0..65535");
        }
    }
    if (mask < 0 || mask > static_cast<int32_t>(256 / sizeof(T))) {
        emu::Fail("WholeReduceSum: mask " + std::to_string(mask) + " outside 0.." + std::to_string(256 / sizeof(T)));
    }
    if (repeatTime == 0 || mask == 0) {
        return;
    }
    const int64_t lastBlock = (mask - 1) / perBlock;
    const int64_t srcSpan = (repeatTime - 1) * static_cast<int64_t>(srcRepStride) * perBlock +
                            lastBlock * srcBlkStride * perBlock + (mask - 1) % perBlock + 1;
    const int64_t dstSpan = (repeatTime - 1) * static_cast<int64_t>(dstRepStride) + 1;
    const T* s = emu::Elems(src, srcSpan, "WholeReduceSum src");
    emu::CheckUb(dst, dstSpan, "WholeReduceSum dst", 4);
    T* d = dst.Data();
    emu::CheckOverlap(dst, dstSpan, src, srcSpan, "WholeReduceSum");
    const emu::PipeOp op(emu::kPipeV);
    emu::Read(op, src, srcSpan, "WholeReduceSum src");
    emu::Write(op, dst, dstSpan, "WholeReduceSum dst");
    float gathered[64];
    int32_t r = 0;
#if defined(__SSE2__)
    // Four repeats are read before any of them is written: only when dst does not alias src.
    const bool disjoint = dst.UbOffset() + dstSpan * sizeof(T) <= src.UbOffset() ||
                          src.UbOffset() + srcSpan * sizeof(T) <= dst.UbOffset();
    if (srcBlkStride == 1 && mask >= 8 && disjoint) {
        for (; r + 4 <= repeatTime; r += 4) {
            const int64_t step = static_cast<int64_t>(srcRepStride) * perBlock;
            const T* const reps[4] = {s + r * step, s + (r + 1) * step, s + (r + 2) * step, s + (r + 3) * step};
            float sums[4];
            emu::RepeatSum4(reps, mask, sums);
            for (int32_t k = 0; k < 4; ++k) {
                d[(r + k) * dstRepStride] = sums[k];
            }
        }
    }
#endif
    for (; r < repeatTime; ++r) {
        const T* rep = s + static_cast<int64_t>(r) * srcRepStride * perBlock;
        const T* lanes = rep;
        if (srcBlkStride != 1) {
            for (int32_t j = 0; j < mask; ++j) {
                gathered[j] = rep[(j / perBlock) * srcBlkStride * perBlock + j % perBlock];
            }
            lanes = gathered;
        }
        d[r * dstRepStride] = emu::RepeatSum(lanes, mask);
    }
    emu::CountVector(static_cast<uint64_t>(repeatTime) * mask, sizeof(T));
}

// Level 2: dst bit i (LSB first, one uint8_t per 8 elements) = src0[i] <cmpMode> src1Scalar. On dav_c220 the
// instruction runs count * sizeof(T) / 256 whole repeats and skips the rest, leaving those mask bits as they were
// (impl/basic_api/dav_c220/kernel_operator_vec_cmp_impl.h, CompareScalarCompute; Compares' page: count must fill
// whole 256-byte repeats, and the vendor's debug build asserts it): a count that does not is rejected.
// (CompareScalar is the deprecated name of the same call.)
template <typename T, typename U>
void Compares(const LocalTensor<U>& dst, const LocalTensor<T>& src0, const T src1Scalar, CMPMODE cmpMode,
              uint32_t count)
{
    static_assert(std::is_same<U, uint8_t>::value, "Compares writes a uint8_t mask on Atlas A2");
    static_assert(std::is_same<T, float>::value || std::is_same<T, half>::value, "Compares takes half or float");
    if (static_cast<uint64_t>(count) * sizeof(T) % 256 != 0) {
        emu::Fail("Compares count: Compares of " + std::to_string(count) + " elements (" +
                  std::to_string(static_cast<uint64_t>(count) * sizeof(T)) +
                  " bytes) is not a whole number of 256-byte repeats; the chip skips the partial repeat and "
                  "leaves its mask bits stale");
    }
    const T* s = emu::Elems(src0, count, "Compares src0");
    U* d = emu::Elems(dst, count / 8, "Compares dst");
    emu::CheckOverlap(dst, count / 8, src0, count, "Compares");
    const emu::PipeOp op(emu::kPipeV);
    emu::Read(op, src0, count, "Compares src0");
    emu::Write(op, dst, count / 8, "Compares dst");
    const float b = emu::ToF(src1Scalar);
    // One mask byte per 8 elements, the comparison chosen once per call rather than per element; f32
    // with SSE2 compares four lanes at a time (the SSE predicates below have the same NaN behaviour as
    // the scalar ones: false, except != which is true).
    auto pack = [&](auto cmp, auto cmp4) {
        uint32_t i = 0;
#if defined(__SSE2__)
        if constexpr (std::is_same<T, float>::value) {
            const __m128 bv = _mm_set1_ps(b);
            for (; i + 8 <= count; i += 8) {
                const int lo = _mm_movemask_ps(cmp4(_mm_loadu_ps(s + i), bv));
                const int hi = _mm_movemask_ps(cmp4(_mm_loadu_ps(s + i + 4), bv));
                d[i / 8] = static_cast<U>(lo | (hi << 4));
            }
        }
#endif
        for (; i < count; i += 8) {
            uint32_t byte = 0;
            for (uint32_t k = 0; k < 8 && i + k < count; ++k) {
                byte |= static_cast<uint32_t>(cmp(emu::ToF(s[i + k]))) << k;
            }
            d[i / 8] = static_cast<U>(byte);
        }
    };
#if defined(__SSE2__)
#define ASCEND_COLD_EMU_CMP4(FN) [](__m128 x, __m128 y) { return FN(x, y); }
#else
#define ASCEND_COLD_EMU_CMP4(FN) 0
#endif
    switch (cmpMode) {
        case CMPMODE::LT: pack([b](float a) { return a < b; }, ASCEND_COLD_EMU_CMP4(_mm_cmplt_ps)); break;
        case CMPMODE::GT: pack([b](float a) { return a > b; }, ASCEND_COLD_EMU_CMP4(_mm_cmpgt_ps)); break;
        case CMPMODE::EQ: pack([b](float a) { return a == b; }, ASCEND_COLD_EMU_CMP4(_mm_cmpeq_ps)); break;
        case CMPMODE::LE: pack([b](float a) { return a <= b; }, ASCEND_COLD_EMU_CMP4(_mm_cmple_ps)); break;
        case CMPMODE::GE: pack([b](float a) { return a >= b; }, ASCEND_COLD_EMU_CMP4(_mm_cmpge_ps)); break;
        case CMPMODE::NE: pack([b](float a) { return a != b; }, ASCEND_COLD_EMU_CMP4(_mm_cmpneq_ps)); break;
    }
#undef ASCEND_COLD_EMU_CMP4
    emu::CountVector(count, sizeof(T));
}

// Level 2, VSEL_TENSOR_SCALAR_MODE: dst[i] = bit i of selMask ? src0[i] : src1, for any count (dav_c220 runs
// vsel in counter mode). The chip first duplicates src1 into 32 bytes at TMP_UB_OFFSET (184 KiB), inside the
// 8 KiB the framework reserves for such APIs (Select's page, UB note), which the launch's UB capacity already
// leaves out: no TPipe buffer can reach it.
template <typename T, typename U>
void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0, T src1,
            SELMODE selMode, uint32_t count)
{
    static_assert(std::is_same<U, uint8_t>::value, "the emulator's select mask is a uint8_t tensor");
    if (selMode != SELMODE::VSEL_TENSOR_SCALAR_MODE) {
        emu::Fail("Select: only VSEL_TENSOR_SCALAR_MODE is emulated for a scalar src1");
    }
    T* d = emu::Elems(dst, count, "Select dst");
    const U* m = emu::Elems(selMask, (count + 7) / 8, "Select selMask");
    const T* s = emu::Elems(src0, count, "Select src0");
    emu::CheckOverlap(dst, count, src0, count, "Select (src0)");
    emu::CheckOverlap(dst, count, selMask, (count + 7) / 8, "Select (selMask)");
    // VselImpl puts PipeBarrier<PIPE_V> between its Duplicate of src1, set_cmpmask and vsel: earlier vector
    // results are complete before vsel reads.
    emu::Block().pipes.Barrier(emu::kPipeV);
    const emu::PipeOp op(emu::kPipeV);
    emu::Read(op, selMask, (count + 7) / 8, "Select selMask");
    emu::Read(op, src0, count, "Select src0");
    emu::Write(op, dst, count, "Select dst");
    uint32_t i = 0;
#if defined(__SSE2__)
    if constexpr (std::is_same<T, float>::value) {
        // Bits k of the mask byte become all-ones lanes: AND with (1, 2, 4, 8), compare equal.
        const __m128i bitsLo = _mm_set_epi32(8, 4, 2, 1);
        const __m128i bitsHi = _mm_set_epi32(128, 64, 32, 16);
        const __m128 other = _mm_set1_ps(src1);
        for (; i + 8 <= count; i += 8) {
            const __m128i byte = _mm_set1_epi32(m[i / 8]);
            const __m128 keepLo = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(byte, bitsLo), bitsLo));
            const __m128 keepHi = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(byte, bitsHi), bitsHi));
            const __m128 lo = _mm_loadu_ps(s + i);
            const __m128 hi = _mm_loadu_ps(s + i + 4);
            _mm_storeu_ps(d + i, _mm_or_ps(_mm_and_ps(keepLo, lo), _mm_andnot_ps(keepLo, other)));
            _mm_storeu_ps(d + i + 4, _mm_or_ps(_mm_and_ps(keepHi, hi), _mm_andnot_ps(keepHi, other)));
        }
    }
#endif
    for (; i < count; i += 8) {
        const uint32_t byte = m[i / 8];
        for (uint32_t k = 0; k < 8 && i + k < count; ++k) {
            d[i + k] = ((byte >> k) & 1u) ? s[i + k] : src1;
        }
    }
    emu::CountVector(count, sizeof(T));
}

}  // namespace AscendC

#endif
