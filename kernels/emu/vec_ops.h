// The vector instructions the kernels use, host side, with the signatures of asc-devkit
// include/basic_api/kernel_operator_vec_{vconv,binary,binary_scalar,duplicate,reduce,cmpsel}_intf.h.
// Each instruction processes 256 bytes per repeat; the counters count repeats and elements.
// Rules enforced:
//   - every UB operand starts 32-byte aligned and the elements it touches lie inside the tensor;
//   - repeat limits: level-0 instructions take `repeatTime` as uint8_t (at most 255 repeats; the
//     device silently truncates a larger value), WholeReduceSum documents repeatTime in [0, 255];
//     the emulator's RepeatTime parameter type catches the value before it is truncated;
//   - mask in 1 .. 256 / sizeof(T) for the continuous-mask (count) form of level-0 instructions.
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

// A level-0 repeat count. On the device the parameter is uint8_t; this type accepts any integer so that
// a kernel computing 256 or more repeats fails here instead of being truncated modulo 256.
struct RepeatTime {
    template <typename I, typename = typename std::enable_if<std::is_integral<I>::value>::type>
    RepeatTime(I v)  // NOLINT: implicit, like the uint8_t it stands for
    {
        if (v < 0 || static_cast<uint64_t>(v) > 255) {
            Fail("repeat limit: repeatTime " + std::to_string(static_cast<long long>(v)) +
                 " outside 0..255 (uint8_t on the device)");
        }
        value = static_cast<uint8_t>(v);
    }
    uint8_t value;
};

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

// The sum of one repeat's `n <= 64` f32 lanes in a fixed tree order: eight 8-lane partials (lane k adds
// elements k, k + 8, ...), then halves, quarters and the pair. The order the vector unit uses inside a
// repeat is not given in the API documents we read, so the kernels' tests hold sums to bounds valid for
// any order; this one lets the host compiler vectorise the loop.
inline float RepeatSum(const float* s, int32_t n)
{
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int32_t full = n / 8 * 8;
    for (int32_t b = 0; b < full; b += 8) {
        for (int32_t k = 0; k < 8; ++k) {
            lane[k] += s[b + k];
        }
    }
    for (int32_t k = 0; k < n - full; ++k) {
        lane[k] += s[full + k];
    }
    const float q[4] = {lane[0] + lane[4], lane[1] + lane[5], lane[2] + lane[6], lane[3] + lane[7]};
    return (q[0] + q[2]) + (q[1] + q[3]);
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
ASCEND_COLD_EMU_BINARY(Max, (x > y || std::isnan(x)) ? x : y)
#undef ASCEND_COLD_EMU_BINARY

template <typename T, bool isSetMask = true>
void Muls(const LocalTensor<T>& dst, const LocalTensor<T>& src, const T& scalarValue, const int32_t& count)
{
    T* d = emu::Elems(dst, count, "Muls dst");
    const T* s = emu::Elems(src, count, "Muls src");
    // The scalar is read once: through the reference, a store to d could (for the compiler) change it,
    // which would keep the loop scalar.
    const float k = emu::ToF(scalarValue);
    for (int32_t i = 0; i < count; ++i) {
        d[i] = T(emu::ToF(s[i]) * k);
    }
    emu::CountVector(count, sizeof(T));
}

template <typename T, bool isSetMask = true>
void Adds(const LocalTensor<T>& dst, const LocalTensor<T>& src, const T& scalarValue, const int32_t& count)
{
    T* d = emu::Elems(dst, count, "Adds dst");
    const T* s = emu::Elems(src, count, "Adds src");
    // The scalar is read once: through the reference, a store to d could (for the compiler) change it,
    // which would keep the loop scalar.
    const float k = emu::ToF(scalarValue);
    for (int32_t i = 0; i < count; ++i) {
        d[i] = T(emu::ToF(s[i]) + k);
    }
    emu::CountVector(count, sizeof(T));
}

template <typename T>
void Duplicate(const LocalTensor<T>& dst, const T& scalarValue, const int32_t& count)
{
    T* d = emu::Elems(dst, count, "Duplicate dst");
    for (int32_t i = 0; i < count; ++i) {
        d[i] = scalarValue;
    }
    emu::CountVector(count, sizeof(T));
}

// Level 0, continuous mask: `mask` elements per repeat, `repeatTime` repeats, strides in 32-byte blocks.
template <typename T, bool isSetMask = true>
void Duplicate(const LocalTensor<T>& dst, const T& scalarValue, uint64_t mask, const emu::RepeatTime repeatTime,
               const uint16_t dstBlockStride, const uint8_t dstRepeatStride)
{
    constexpr uint32_t perBlock = 32 / sizeof(T);
    if (mask == 0 || mask > 256 / sizeof(T)) {
        emu::Fail("Duplicate: mask " + std::to_string(mask) + " outside 1.." + std::to_string(256 / sizeof(T)));
    }
    const uint64_t lastBlock = (mask - 1) / perBlock;
    const uint64_t span = repeatTime.value == 0
                              ? 0
                              : (repeatTime.value - 1ull) * dstRepeatStride * perBlock +
                                    lastBlock * dstBlockStride * perBlock + (mask - 1) % perBlock + 1;
    T* d = emu::Elems(dst, span, "Duplicate dst");
    for (uint32_t r = 0; r < repeatTime.value; ++r) {
        for (uint64_t j = 0; j < mask; ++j) {
            d[r * dstRepeatStride * perBlock + (j / perBlock) * dstBlockStride * perBlock + j % perBlock] = scalarValue;
        }
    }
    emu::CountVector(static_cast<uint64_t>(repeatTime.value) * 256 / sizeof(T), sizeof(T));
}

// dst[0] = max (and dst[1] = its lowest index, as the bits of an integer, when calIndex). NaN propagates.
template <typename T>
void ReduceMax(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count, bool calIndex = 0)
{
    static_assert(std::is_same<T, float>::value, "the emulator implements ReduceMax for float");
    const T* s = emu::Elems(src, count, "ReduceMax src");
    const uint32_t repeats = (static_cast<uint32_t>(count) * sizeof(T) + 255) / 256;
    emu::CheckUb(sharedTmpBuffer, (2 * repeats + 7) / 8 * 8 * (calIndex ? 2 : 1), "ReduceMax sharedTmpBuffer");
    T* d = emu::Elems(dst, calIndex ? 2 : 1, "ReduceMax dst");
    if (count <= 0) {
        return;  // documented as a no-op
    }
    const uint32_t at = emu::FirstMaxIndex(s, static_cast<uint32_t>(count));
    const float best = s[at];
    d[0] = best;
    if (calIndex) {
        std::memcpy(&d[1], &at, 4);
    }
    emu::CountVector(count, sizeof(T));
}

template <typename T, bool isSetMask = true>
void ReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count)
{
    static_assert(std::is_same<T, float>::value, "the emulator implements ReduceSum for float");
    const T* s = emu::Elems(src, count, "ReduceSum src");
    const uint32_t repeats = (static_cast<uint32_t>(count) * sizeof(T) + 255) / 256;
    emu::CheckUb(sharedTmpBuffer, (repeats + 7) / 8 * 8, "ReduceSum sharedTmpBuffer");
    T* d = emu::Elems(dst, 1, "ReduceSum dst");
    // One partial per 256-byte repeat, then the partials in order: the shape of the hardware's reduction.
    float total = 0.0f;
    for (int32_t base = 0; base < count; base += 64) {
        total += emu::RepeatSum(s + base, count - base < 64 ? count - base : 64);
    }
    d[0] = total;
    emu::CountVector(count, sizeof(T));
}

// Level 0: one sum of `mask` elements per repeat, written to dst[r * dstRepStride];
// src strides in 32-byte blocks. repeatTime in [0, 255] per the WholeReduceSum API documentation.
template <typename T, bool isSetMask = true>
void WholeReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t mask,
                    const int32_t repeatTime, const int32_t dstRepStride, const int32_t srcBlkStride,
                    const int32_t srcRepStride)
{
    static_assert(std::is_same<T, float>::value, "the emulator implements WholeReduceSum for float");
    constexpr int32_t perBlock = 32 / sizeof(T);
    emu::RepeatTime checked(repeatTime);
    if (mask <= 0 || mask > static_cast<int32_t>(256 / sizeof(T))) {
        emu::Fail("WholeReduceSum: mask " + std::to_string(mask) + " outside 1.." + std::to_string(256 / sizeof(T)));
    }
    if (repeatTime == 0) {
        return;
    }
    const int64_t lastBlock = (mask - 1) / perBlock;
    const int64_t srcSpan = (repeatTime - 1) * static_cast<int64_t>(srcRepStride) * perBlock +
                            lastBlock * srcBlkStride * perBlock + (mask - 1) % perBlock + 1;
    const T* s = emu::Elems(src, srcSpan, "WholeReduceSum src");
    T* d = emu::Elems(dst, (repeatTime - 1) * static_cast<int64_t>(dstRepStride) + 1, "WholeReduceSum dst");
    float gathered[64];
    for (int32_t r = 0; r < repeatTime; ++r) {
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

// dst bit i (LSB first, one uint8_t per 8 elements) = src0[i] <cmpMode> src1Scalar.
template <typename T, typename U>
void CompareScalar(const LocalTensor<U>& dst, const LocalTensor<T>& src0, const T src1Scalar, CMPMODE cmpMode,
                   uint32_t count)
{
    static_assert(sizeof(U) == 1, "the emulator's compare mask is a uint8_t tensor");
    const T* s = emu::Elems(src0, count, "CompareScalar src0");
    U* d = emu::Elems(dst, (count + 7) / 8, "CompareScalar dst");
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

// VSEL_TENSOR_SCALAR_MODE: dst[i] = bit i of selMask ? src0[i] : src1.
template <typename T, typename U>
void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0, T src1,
            SELMODE selMode, uint32_t count)
{
    if (selMode != SELMODE::VSEL_TENSOR_SCALAR_MODE) {
        emu::Fail("Select: only VSEL_TENSOR_SCALAR_MODE is emulated for a scalar src1");
    }
    T* d = emu::Elems(dst, count, "Select dst");
    const U* m = emu::Elems(selMask, (count + 7) / 8, "Select selMask");
    const T* s = emu::Elems(src0, count, "Select src0");
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
