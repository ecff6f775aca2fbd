// GlobalTensor and LocalTensor, host side. Real declarations: asc-devkit include/basic_api/kernel_tensor.h
// (GlobalTensor::SetGlobalBuffer(__gm__ T*, uint64_t), GetValue/SetValue, operator[]; LocalTensor
// GetValue/SetValue, operator[], GetSize, GetPosition). A LocalTensor is a window on the running block's Unified
// Buffer; its UB address (byte offset) is what the alignment rules check, and its logical position (the TPosition
// of the TQue or TBuf it came from) what the copy routes check.
#ifndef ASCEND_COLD_EMU_TENSOR_H
#define ASCEND_COLD_EMU_TENSOR_H

#include <cstdint>
#include <cstring>
#include <string>

#include "block_context.h"
#include "dtypes.h"

namespace emu {

// One operation on a pipe; each UB access it makes goes through the block's pipe model (hazard.h).
struct PipeOp {
    explicit PipeOp(int p) : pipe(p), seq(Block().pipes.Issue(p)) {}
    void Touch(uint32_t offset, uint64_t bytes, bool write, const char* what) const
    {
        Block().pipes.Touch(pipe, seq, write, offset, static_cast<uint32_t>(offset + bytes), what);
    }
    int pipe;
    uint64_t seq;
};

}  // namespace emu

namespace AscendC {

// Logical buffer positions (asc-devkit impl/basic_api/common_types.h); only the vector-core ones are used.
enum class TPosition : uint8_t { GM, A1, A2, B1, B2, C1, C2, CO1, CO2, VECIN, VECOUT, VECCALC, LCM = VECCALC };

template <typename T>
class GlobalTensor {
public:
    using PrimType = T;

    void SetGlobalBuffer(T* buffer, uint64_t bufferSize)
    {
        addr_ = buffer;
        size_ = bufferSize;
    }
    void SetGlobalBuffer(T* buffer)
    {
        addr_ = buffer;
        size_ = UINT64_MAX / sizeof(T);
    }

    // Scalar GM read (through the scalar unit's data cache on the device).
    T GetValue(uint64_t offset) const
    {
        CheckIndex(offset, "GlobalTensor::GetValue");
        emu::CheckGm(addr_ + offset, sizeof(T), "GlobalTensor::GetValue");
        emu::Block().counters->gm_read_bytes += sizeof(T);
        T v;
        std::memcpy(&v, addr_ + offset, sizeof(T));
        return v;
    }
    // Scalar GM write; the kernels here do not use it for outputs (DataCopyPad instead), since a scalar
    // write sits in the data cache until flushed.
    void SetValue(uint64_t offset, T value) const
    {
        CheckIndex(offset, "GlobalTensor::SetValue");
        emu::CheckGm(addr_ + offset, sizeof(T), "GlobalTensor::SetValue");
        emu::Block().counters->gm_write_bytes += sizeof(T);
        std::memcpy(addr_ + offset, &value, sizeof(T));
    }

    GlobalTensor operator[](uint64_t offset) const
    {
        GlobalTensor t;
        t.addr_ = addr_ + offset;
        t.size_ = offset <= size_ ? size_ - offset : 0;
        return t;
    }

    T* GetPhyAddr() const { return addr_; }
    uint64_t GetSize() const { return size_; }

private:
    void CheckIndex(uint64_t offset, const char* what) const
    {
        if (offset >= size_) {
            emu::Fail(std::string(what) + ": element " + std::to_string(offset) + " past the buffer size " +
                      std::to_string(size_) + " given to SetGlobalBuffer");
        }
    }

    T* addr_ = nullptr;
    uint64_t size_ = 0;
};

template <typename T>
class LocalTensor {
public:
    using PrimType = T;

    LocalTensor() = default;
    // Emulator-only constructor used by TQue / TBuf: `len` elements at UB byte offset `offset`, in `pos`.
    LocalTensor(uint32_t offset, uint32_t len, TPosition pos) : offset_(offset), len_(len), pos_(pos) {}

    T GetValue(uint32_t index) const
    {
        CheckIndex(index, "LocalTensor::GetValue");
        emu::PipeOp(emu::kPipeS).Touch(offset_ + index * sizeof(T), sizeof(T), false, "LocalTensor::GetValue");
        T v;
        std::memcpy(&v, emu::Block().ub + offset_ + index * sizeof(T), sizeof(T));
        return v;
    }
    void SetValue(uint32_t index, T value) const
    {
        CheckIndex(index, "LocalTensor::SetValue");
        emu::PipeOp(emu::kPipeS).Touch(offset_ + index * sizeof(T), sizeof(T), true, "LocalTensor::SetValue");
        std::memcpy(emu::Block().ub + offset_ + index * sizeof(T), &value, sizeof(T));
    }

    LocalTensor operator[](uint32_t offset) const
    {
        if (offset > len_) {
            emu::Fail("UB bounds: LocalTensor offset " + std::to_string(offset) + " past its " + std::to_string(len_) +
                      " elements");
        }
        return LocalTensor(offset_ + offset * sizeof(T), len_ - offset, pos_);
    }

    // Reinterprets the same UB bytes as another element type (LocalTensor::ReinterpretCast).
    template <typename U>
    LocalTensor<U> ReinterpretCast() const
    {
        return LocalTensor<U>(offset_, static_cast<uint32_t>(static_cast<uint64_t>(len_) * sizeof(T) / sizeof(U)),
                              pos_);
    }

    uint32_t GetSize() const { return len_; }
    TPosition GetPosition() const { return pos_; }

    // Emulator-only accessors.
    uint32_t UbOffset() const { return offset_; }
    T* Data() const { return reinterpret_cast<T*>(emu::Block().ub + offset_); }

private:
    void CheckIndex(uint32_t index, const char* what) const
    {
        if (index >= len_) {
            emu::Fail(std::string("UB bounds: ") + what + " of element " + std::to_string(index) + " in a tensor of " +
                      std::to_string(len_));
        }
    }

    uint32_t offset_ = 0;
    uint32_t len_ = 0;
    TPosition pos_ = TPosition::VECCALC;
};

}  // namespace AscendC

namespace emu {

// UB operand rules shared by copies and vector instructions: the start address is aligned (32 bytes unless the
// API documents less: asc-devkit docs/zh/api/SIMD-API/通用说明和约束.md, "通用地址对齐约束": Unified Buffer
// 32Byte对齐), and `count` elements lie inside the tensor.
template <typename T>
void CheckUb(const AscendC::LocalTensor<T>& t, uint64_t count, const char* what, uint32_t align = 32)
{
    if (t.UbOffset() % align != 0) {
        Fail(std::string("UB address alignment: ") + what + " operand at UB offset " + std::to_string(t.UbOffset()) +
             " is not " + std::to_string(align) + "-byte aligned");
    }
    if (count > t.GetSize()) {
        Fail(std::string("UB bounds: ") + what + " touches " + std::to_string(count) + " elements of a tensor of " +
             std::to_string(t.GetSize()));
    }
}

template <typename T>
void Read(const PipeOp& op, const AscendC::LocalTensor<T>& t, uint64_t count, const char* what)
{
    op.Touch(t.UbOffset(), count * sizeof(T), false, what);
}

template <typename T>
void Write(const PipeOp& op, const AscendC::LocalTensor<T>& t, uint64_t count, const char* what)
{
    op.Touch(t.UbOffset(), count * sizeof(T), true, what);
}

inline const char* PositionName(AscendC::TPosition pos)
{
    switch (pos) {
        case AscendC::TPosition::VECIN: return "VECIN";
        case AscendC::TPosition::VECOUT: return "VECOUT";
        case AscendC::TPosition::VECCALC: return "VECCALC";
        default: return "a non-vector position";
    }
}

// A copy route: the tensor's logical position must be one the API documents for that direction on
// Atlas A2 (`allowed` names them for the message).
template <typename T>
void CheckRoute(const AscendC::LocalTensor<T>& t, bool ok, const char* what, const char* allowed)
{
    if (!ok) {
        Fail(std::string(what) + " route: the UB tensor is in " + PositionName(t.GetPosition()) +
             "; the documented route for Atlas A2 is " + allowed);
    }
}

// The overlap rule for a destination and one source of a vector instruction (docs/zh/api/SIMD-API/
// 通用说明和约束.md, "通用地址重叠约束"): either disjoint or the very same bytes; anything else lets a repeat
// read what an earlier repeat of the same instruction wrote.
template <typename D, typename S>
void CheckOverlap(const AscendC::LocalTensor<D>& dst, uint64_t dstCount, const AscendC::LocalTensor<S>& src,
                  uint64_t srcCount, const char* what)
{
    const uint64_t d0 = dst.UbOffset(), d1 = d0 + dstCount * sizeof(D);
    const uint64_t s0 = src.UbOffset(), s1 = s0 + srcCount * sizeof(S);
    const bool disjoint = d1 <= s0 || s1 <= d0 || dstCount == 0 || srcCount == 0;
    if (!disjoint && !(d0 == s0 && d1 == s1)) {
        Fail(std::string("operand overlap: ") + what + " dst UB [" + std::to_string(d0) + ", " + std::to_string(d1) +
             ") partly overlaps a source at [" + std::to_string(s0) + ", " + std::to_string(s1) +
             "); operands must be disjoint or identical");
    }
}

}  // namespace emu

#endif
