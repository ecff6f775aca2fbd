// DataCopy and DataCopyPad between GM and UB, host side. Real declarations:
// asc-devkit include/basic_api/kernel_operator_data_copy_intf.h and kernel_struct_data_copy.h
// (DataCopyExtParams{blockCount u16, blockLen u32 bytes, srcStride, dstStride, rsv};
// DataCopyPadExtParams<T>{isPad, leftPadding, rightPadding, paddingValue}).
// Rules enforced (docs/zh/api/SIMD-API/基础API/Memory矢量计算/数据搬运/):
//   - DataCopy: count * sizeof(T) must be a multiple of 32 bytes (the hardware silently rounds down);
//   - every UB operand starts 32-byte aligned; every GM byte lies inside a live allocation;
//   - DataCopyPad: blockLen is a multiple of sizeof(T), at most 2097151; GM->UB strides: src in bytes,
//     dst in 32-byte blocks; UB->GM strides: src in 32-byte blocks, dst in bytes; each block occupies
//     blockLen rounded up to 32 bytes in UB. Pad bytes are the padding value when isPad, else left as
//     they were (poison).
#ifndef ASCEND_COLD_EMU_DATA_COPY_H
#define ASCEND_COLD_EMU_DATA_COPY_H

#include <cstdint>
#include <cstring>
#include <string>

#include "tensor.h"

namespace AscendC {

struct DataCopyExtParams {
    DataCopyExtParams() {}
    DataCopyExtParams(const uint16_t count, const uint32_t len, const uint32_t srcStrideIn,
                      const uint32_t dstStrideIn, const uint32_t rsvIn)
        : blockCount(count), blockLen(len), srcStride(srcStrideIn), dstStride(dstStrideIn), rsv(rsvIn)
    {}
    uint16_t blockCount = 1;
    uint32_t blockLen = 0;
    uint32_t srcStride = 0;
    uint32_t dstStride = 0;
    uint32_t rsv = 0;
};

template <typename T>
struct DataCopyPadExtParams {
    DataCopyPadExtParams() {}
    DataCopyPadExtParams(const bool isPadValue, const uint8_t leftPadValue, const uint8_t rightPadValue, T padValue)
        : isPad(isPadValue), leftPadding(leftPadValue), rightPadding(rightPadValue), paddingValue(padValue)
    {}
    bool isPad = false;
    uint8_t leftPadding = 0;
    uint8_t rightPadding = 0;
    T paddingValue = T(0);
};

}  // namespace AscendC

namespace emu {

inline void CheckCopyLen(uint64_t bytes, const char* what)
{
    if (bytes % 32 != 0) {
        Fail(std::string("DataCopy length: ") + what + " moves " + std::to_string(bytes) +
             " bytes, not a multiple of 32 (the hardware rounds down; use DataCopyPad for a tail)");
    }
}

inline void CheckPadParams(const AscendC::DataCopyExtParams& p, size_t elem, const char* what)
{
    if (p.blockLen % elem != 0 || p.blockLen > 2097151u) {
        Fail(std::string("DataCopyPad length: ") + what + " blockLen " + std::to_string(p.blockLen) +
             " is not a multiple of the element size " + std::to_string(elem) + " or exceeds 2097151");
    }
}

// `count` blocks of `len` bytes, `stride` bytes apart from `first`, all inside device allocations. The
// allocations are disjoint, so when the whole span lies in one of them every block does: one lookup
// instead of one per block. Otherwise each block is checked, so the error names the first bad one.
inline void CheckGmBlocks(const void* first, uint64_t count, uint64_t len, uint64_t stride, const char* what)
{
    if (count == 0) {
        return;
    }
    const uint8_t* base = static_cast<const uint8_t*>(first);
    if (stride >= len && GmSpanValid(base, (count - 1) * stride + len)) {
        return;
    }
    for (uint64_t i = 0; i < count; ++i) {
        CheckGm(base + i * stride, len, what);
    }
}

}  // namespace emu

namespace AscendC {

template <typename T>
void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const uint32_t count)
{
    const uint64_t bytes = static_cast<uint64_t>(count) * sizeof(T);
    emu::CheckCopyLen(bytes, "DataCopy GM->UB");
    emu::CheckUb(dst, count, "DataCopy GM->UB dst");
    emu::CheckGm(src.GetPhyAddr(), bytes, "DataCopy GM->UB read");
    std::memcpy(dst.Data(), src.GetPhyAddr(), bytes);
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_read_bytes += bytes;
    c->copy_instrs += 1;
}

template <typename T>
void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const uint32_t count)
{
    const uint64_t bytes = static_cast<uint64_t>(count) * sizeof(T);
    emu::CheckCopyLen(bytes, "DataCopy UB->GM");
    emu::CheckUb(src, count, "DataCopy UB->GM src");
    emu::CheckGm(dst.GetPhyAddr(), bytes, "DataCopy UB->GM write");
    std::memcpy(dst.GetPhyAddr(), src.Data(), bytes);
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_write_bytes += bytes;
    c->copy_instrs += 1;
}

template <typename T>
void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyExtParams& dataCopyParams,
                 const DataCopyPadExtParams<T>& padParams)
{
    emu::CheckPadParams(dataCopyParams, sizeof(T), "GM->UB");
    const uint64_t ubBlock = (static_cast<uint64_t>(dataCopyParams.blockLen) + 31) / 32 * 32;
    const uint64_t ubStride = ubBlock + 32ull * dataCopyParams.dstStride;
    const uint64_t gmStride = dataCopyParams.blockLen + static_cast<uint64_t>(dataCopyParams.srcStride);
    const uint64_t n = dataCopyParams.blockCount;
    const uint64_t ubSpan = n == 0 ? 0 : (n - 1) * ubStride + ubBlock;
    emu::CheckUb(dst, ubSpan / sizeof(T), "DataCopyPad GM->UB dst");
    uint8_t* ub = reinterpret_cast<uint8_t*>(dst.Data());
    const uint8_t* gm = reinterpret_cast<const uint8_t*>(src.GetPhyAddr());
    emu::CheckGmBlocks(gm, n, dataCopyParams.blockLen, gmStride, "DataCopyPad GM->UB read");
    for (uint64_t i = 0; i < n; ++i) {
        std::memcpy(ub + i * ubStride, gm + i * gmStride, dataCopyParams.blockLen);
        if (padParams.isPad) {
            for (uint64_t off = dataCopyParams.blockLen; off + sizeof(T) <= ubBlock; off += sizeof(T)) {
                std::memcpy(ub + i * ubStride + off, &padParams.paddingValue, sizeof(T));
            }
        }
    }
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_read_bytes += n * dataCopyParams.blockLen;
    c->copy_instrs += 1;
}

template <typename T>
void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyExtParams& dataCopyParams)
{
    emu::CheckPadParams(dataCopyParams, sizeof(T), "UB->GM");
    const uint64_t ubBlock = (static_cast<uint64_t>(dataCopyParams.blockLen) + 31) / 32 * 32;
    const uint64_t ubStride = ubBlock + 32ull * dataCopyParams.srcStride;
    const uint64_t gmStride = dataCopyParams.blockLen + static_cast<uint64_t>(dataCopyParams.dstStride);
    const uint64_t n = dataCopyParams.blockCount;
    const uint64_t ubSpan = n == 0 ? 0 : (n - 1) * ubStride + dataCopyParams.blockLen;
    emu::CheckUb(src, (ubSpan + sizeof(T) - 1) / sizeof(T), "DataCopyPad UB->GM src");
    const uint8_t* ub = reinterpret_cast<const uint8_t*>(src.Data());
    uint8_t* gm = reinterpret_cast<uint8_t*>(dst.GetPhyAddr());
    emu::CheckGmBlocks(gm, n, dataCopyParams.blockLen, gmStride, "DataCopyPad UB->GM write");
    for (uint64_t i = 0; i < n; ++i) {
        std::memcpy(gm + i * gmStride, ub + i * ubStride, dataCopyParams.blockLen);
    }
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_write_bytes += n * dataCopyParams.blockLen;
    c->copy_instrs += 1;
}

}  // namespace AscendC

#endif
