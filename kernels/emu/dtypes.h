// Host stand-ins for the device's 16-bit float types: `half` (IEEE binary16) and `bfloat16_t`
// (the top half of an IEEE binary32). On the device both are compiler builtins; here they are
// storage types that convert to and from float with round-to-nearest-even, so the kernels' Cast
// calls produce the bits the vector unit produces for CAST_RINT / CAST_NONE.
#ifndef ASCEND_COLD_EMU_DTYPES_H
#define ASCEND_COLD_EMU_DTYPES_H

#include <cstdint>
#include <cstring>

namespace emu {

inline uint32_t FloatBits(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float BitsFloat(uint32_t u)
{
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float HalfToFloat(uint16_t h)
{
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) {
        return BitsFloat(sign | 0x7f800000u | (mant << 13));
    }
    if (exp == 0) {
        if (mant == 0) {
            return BitsFloat(sign);
        }
        // Subnormal: value = mant * 2^-24.
        const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return BitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t FloatToHalf(float f)
{
    const uint32_t u = FloatBits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) {  // inf or NaN (NaN stays quiet NaN)
        return static_cast<uint16_t>(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0u));
    }
    if (absu >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (absu < 0x38800000u) {  // below the smallest normal half: subnormal or zero, RNE via float add
        const float a = BitsFloat(absu) + 0.5f;  // 0.5 = 2^-1; its ulp is 2^-24 = the half subnormal step
        return static_cast<uint16_t>(sign | (FloatBits(a) - FloatBits(0.5f)));
    }
    const uint32_t mantOdd = (absu >> 13) & 1u;
    const uint32_t rounded = absu + 0xc8000fffu + mantOdd;  // rebias exponent by -112 and round half to even
    return static_cast<uint16_t>(sign | (rounded >> 13));
}

inline float Bf16ToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

inline uint16_t FloatToBf16(float f)
{
    const uint32_t u = FloatBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    }
    return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace emu

// IEEE binary16, as the device's `half`.
struct half {
    uint16_t bits = 0;
    half() = default;
    half(float f) : bits(emu::FloatToHalf(f)) {}
    operator float() const { return emu::HalfToFloat(bits); }
};

// bfloat16, as the device's `bfloat16_t`.
struct bfloat16_t {
    uint16_t bits = 0;
    bfloat16_t() = default;
    bfloat16_t(float f) : bits(emu::FloatToBf16(f)) {}
    operator float() const { return emu::Bf16ToFloat(bits); }
};

static_assert(sizeof(half) == 2 && sizeof(bfloat16_t) == 2, "16-bit storage types");

#endif
