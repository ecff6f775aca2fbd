// DataCopy and DataCopyPad between GM and UB, host side. Real declarations:
// asc-devkit include/basic_api/kernel_operator_data_copy_intf.h and kernel_struct_data_copy.h
// (DataCopyExtParams{blockCount u16, blockLen u32 bytes, srcStride, dstStride, rsv};
// DataCopyPadExtParams<T>{isPad, leftPadding, rightPadding, paddingValue}). Rules, each a Fail() naming the call
// (docs/zh/api/SIMD-API/基础API/Memory矢量计算/数据搬运/, the pages of DataCopy（GM与UB连续数据搬运） and both
// DataCopyPad pages):
//   - routes (logical positions) of Atlas A2: DataCopy GM->VECIN and VECOUT->GM only; DataCopyPad GM->VECIN/
//     VECOUT and VECIN/VECOUT->GM (VECCALC is listed for Ascend 950 only);
//   - DataCopy: count * sizeof(T) must be a multiple of 32 bytes (the hardware silently rounds down);
//   - every UB operand starts 32-byte aligned; DataCopy's GM address is aligned to sizeof(T); every GM byte lies
//     inside a live allocation;
//   - DataCopyPad: blockCount <= 4095, blockLen a multiple of sizeof(T) and <= 2097151, blockCount or blockLen 0
//     is a no-op; GM->UB strides: src in bytes, dst in 32-byte blocks; UB->GM strides: src in 32-byte blocks, dst
//     in bytes; each block occupies blockLen rounded up to 32 bytes in UB.
// Padding, as the GM->UB page describes it: with leftPadding = rightPadding = 0 the bytes from blockLen to the next
// 32-byte boundary are "dummy" data, the block's first element, whatever isPad and paddingValue say. Non-zero pad
// counts are not emulated (no kernel uses them) and Fail.
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

// DataCopy's GM operand is aligned to its element size (the page's 约束说明); DataCopyPad's needs none.
inline void CheckGmAlign(const void* addr, size_t elem, const char* what)
{
    if (reinterpret_cast<uintptr_t>(addr) % elem != 0) {
        Fail(std::string("GM address alignment: ") + what + " address is not aligned to the " +
             std::to_string(elem) + "-byte element");
    }
}

inline void CheckCopyLen(uint64_t bytes, const char* what)
{
    if (bytes % 32 != 0) {
        Fail(std::string("DataCopy length: ") + what + " moves " + std::to_string(bytes) +
             " bytes, not a multiple of 32 (the hardware rounds down; use DataCopyPad for a tail)");
    }
}

// The parameter ranges of both DataCopyPad pages; returns false for the documented no-op (no block or no byte).
inline bool CheckPadParams(const AscendC::DataCopyExtParams& p, size_t elem, const char* what)
{
    if (p.blockCount > 4095) {
        Fail(std::string("DataCopyPad blockCount: ") + what + " blockCount " + std::to_string(p.blockCount) +
             " is outside 0..4095");
    }
    if (p.blockLen % elem != 0 || p.blockLen > 2097151u) {
        Fail(std::string("DataCopyPad length: ") + what + " blockLen " + std::to_string(p.blockLen) +
             " is not a multiple of the element size " + std::to_string(elem) + " or exceeds 2097151");
    }
    return p.blockCount != 0 && p.blockLen != 0;
}

inline bool InOrOut(AscendC::TPosition pos)
{
    return pos == AscendC::TPosition::VECIN || pos == AscendC::TPosition::VECOUT;
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
    emu::CheckRoute(dst, dst.GetPosition() == TPosition::VECIN, "DataCopy GM->UB", "GM->VECIN");
    emu::CheckCopyLen(bytes, "DataCopy GM->UB");
    emu::CheckUb(dst, count, "DataCopy GM->UB dst");
    emu::CheckGmAlign(src.GetPhyAddr(), sizeof(T), "DataCopy GM->UB src");
    emu::CheckGm(src.GetPhyAddr(), bytes, "DataCopy GM->UB read");
    emu::Write(emu::PipeOp(emu::kPipeMte2), dst, count, "DataCopy GM->UB");
    std::memcpy(dst.Data(), src.GetPhyAddr(), bytes);
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_read_bytes += bytes;
    c->copy_instrs += 1;
}

template <typename T>
void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const uint32_t count)
{
    const uint64_t bytes = static_cast<uint64_t>(count) * sizeof(T);
    emu::CheckRoute(src, src.GetPosition() == TPosition::VECOUT, "DataCopy UB->GM", "VECOUT->GM");
    emu::CheckCopyLen(bytes, "DataCopy UB->GM");
    emu::CheckUb(src, count, "DataCopy UB->GM src");
    emu::CheckGmAlign(dst.GetPhyAddr(), sizeof(T), "DataCopy UB->GM dst");
    emu::CheckGm(dst.GetPhyAddr(), bytes, "DataCopy UB->GM write");
    emu::Read(emu::PipeOp(emu::kPipeMte3), src, count, "DataCopy UB->GM");
    std::memcpy(dst.GetPhyAddr(), src.Data(), bytes);
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_write_bytes += bytes;
    c->copy_instrs += 1;
}

template <typename T>
void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyExtParams& dataCopyParams,
                 const DataCopyPadExtParams<T>& padParams)
{
    emu::CheckRoute(dst, emu::InOrOut(dst.GetPosition()), "DataCopyPad GM->UB", "GM->VECIN or GM->VECOUT");
    if (padParams.leftPadding != 0 || padParams.rightPadding != 0) {
        emu::Fail("DataCopyPad GM->UB: leftPadding / rightPadding other than 0 are not emulated");
    }
    if (!emu::CheckPadParams(dataCopyParams, sizeof(T), "GM->UB")) {
        return;
    }
    const uint64_t len = dataCopyParams.blockLen;
    const uint64_t ubBlock = (len + 31) / 32 * 32;
    const uint64_t ubStride = ubBlock + 32ull * dataCopyParams.dstStride;
    const uint64_t gmStride = len + static_cast<uint64_t>(dataCopyParams.srcStride);
    const uint64_t n = dataCopyParams.blockCount;
    const uint64_t span = ((n - 1) * ubStride + ubBlock) / sizeof(T);
    emu::CheckUb(dst, span, "DataCopyPad GM->UB dst");
    uint8_t* ub = reinterpret_cast<uint8_t*>(dst.Data());
    const uint8_t* gm = reinterpret_cast<const uint8_t*>(src.GetPhyAddr());
    emu::CheckGmBlocks(gm, n, len, gmStride, "DataCopyPad GM->UB read");
    emu::Write(emu::PipeOp(emu::kPipeMte2), dst, span, "DataCopyPad GM->UB");
    for (uint64_t i = 0; i < n; ++i) {
        uint8_t* block = ub + i * ubStride;
        std::memcpy(block, gm + i * gmStride, len);
        for (uint64_t off = len; off < ubBlock; off += sizeof(T)) {
            std::memcpy(block + off, block, sizeof(T));
        }
    }
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_read_bytes += n * len;
    c->copy_instrs += 1;
}

template <typename T>
void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyExtParams& dataCopyParams)
{
    emu::CheckRoute(src, emu::InOrOut(src.GetPosition()), "DataCopyPad UB->GM", "VECIN->GM or VECOUT->GM");
    if (!emu::CheckPadParams(dataCopyParams, sizeof(T), "UB->GM")) {
        return;
    }
    const uint64_t len = dataCopyParams.blockLen;
    const uint64_t ubStride = (len + 31) / 32 * 32 + 32ull * dataCopyParams.srcStride;
    const uint64_t gmStride = len + static_cast<uint64_t>(dataCopyParams.dstStride);
    const uint64_t n = dataCopyParams.blockCount;
    const uint64_t span = ((n - 1) * ubStride + len) / sizeof(T);
    emu::CheckUb(src, span, "DataCopyPad UB->GM src");
    const uint8_t* ub = reinterpret_cast<const uint8_t*>(src.Data());
    uint8_t* gm = reinterpret_cast<uint8_t*>(dst.GetPhyAddr());
    emu::CheckGmBlocks(gm, n, len, gmStride, "DataCopyPad UB->GM write");
    emu::Read(emu::PipeOp(emu::kPipeMte3), src, span, "DataCopyPad UB->GM");
    for (uint64_t i = 0; i < n; ++i) {
        std::memcpy(gm + i * gmStride, ub + i * ubStride, len);
    }
    EmuBlockCounters* c = emu::Block().counters;
    c->gm_write_bytes += n * len;
    c->copy_instrs += 1;
}

}  // namespace AscendC

#endif
