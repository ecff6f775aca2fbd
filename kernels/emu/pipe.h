// TPipe, TQue and TBuf, host side. Real declarations: asc-devkit include/basic_api/kernel_tpipe.h
// (TPipe::InitBuffer(T& que, uint8_t num, uint32_t len), TPipe::InitBuffer(TBuf<pos>&, uint32_t len)) and
// the TQue / TBuf classes (AllocTensor / EnQue / DeQue / FreeTensor; Get). The pipe carves the block's
// Unified Buffer from offset 0 upwards in 32-byte units; what the chip would reject is a Fail():
//   - UB capacity: the sum of all buffers exceeds the launch's ub_bytes (910B: 192 KiB physical,
//     192 KiB - 256 B - 8 KiB usable by default; docs/zh/guide/.../架构规格/NPU架构版本2201.md);
//   - queue misuse: AllocTensor with every buffer of the queue outstanding, EnQue beyond the queue's
//     depth, DeQue of an empty queue, FreeTensor of a tensor the queue did not hand out.
// A queue synchronises its producer and consumer pipes as the real one does (asc-devkit impl/basic_api/
// kernel_event.h, GetQueEvt): a VECIN queue's EnQue -> DeQue orders MTE2 before V and FreeTensor -> AllocTensor
// V before MTE2; a VECOUT queue's V before MTE3 and MTE3 before V. A TBuf synchronises nothing.
#ifndef ASCEND_COLD_EMU_PIPE_H
#define ASCEND_COLD_EMU_PIPE_H

#include <cstdint>
#include <cstring>
#include <string>

#include "tensor.h"

namespace emu {

constexpr uint32_t kMaxQueueBuffers = 8;

// Reserves `bytes` (rounded up to 32) of the running block's UB; returns the offset.
inline uint32_t UbReserve(uint32_t bytes, const char* what)
{
    BlockContext& b = Block();
    const uint64_t aligned = (static_cast<uint64_t>(bytes) + 31) / 32 * 32;
    const uint64_t end = b.ubUsed + aligned;
    if (end > b.env->ub_bytes) {
        Fail(std::string("UB capacity: ") + what + " needs " + std::to_string(aligned) + " bytes at UB offset " +
             std::to_string(b.ubUsed) + ", past the core's " + std::to_string(b.env->ub_bytes) + " bytes");
    }
    const uint32_t offset = b.ubUsed;
    b.ubUsed = static_cast<uint32_t>(end);
    // Poisoned as it is handed out: a kernel that reads UB it never wrote sees NaN patterns.
    std::memset(b.ub + offset, 0xFF, aligned);
    if (end > b.counters->ub_peak_bytes) {
        b.counters->ub_peak_bytes = end;
    }
    return offset;
}

}  // namespace emu

namespace AscendC {

template <TPosition pos, int32_t depth>
class TQue {
public:
    static_assert(depth >= 1, "a queue holds at least one tensor");
    static_assert(pos == TPosition::VECIN || pos == TPosition::VECOUT, "the emulator's queues are VECIN or VECOUT");
    static constexpr int kProducer = pos == TPosition::VECIN ? emu::kPipeMte2 : emu::kPipeV;
    static constexpr int kConsumer = pos == TPosition::VECIN ? emu::kPipeV : emu::kPipeMte3;

    template <typename T>
    LocalTensor<T> AllocTensor()
    {
        for (uint32_t i = 0; i < num_; ++i) {
            if (!inUse_[i]) {
                inUse_[i] = true;
                emu::Block().pipes.Wait(kProducer, freed_[i]);
                return LocalTensor<T>(offset_[i], len_ / sizeof(T), pos);
            }
        }
        emu::Fail("queue misuse: AllocTensor with all " + std::to_string(num_) +
                  " buffers of the queue outstanding (FreeTensor missing, or InitBuffer num too small)");
    }

    template <typename T>
    bool EnQue(const LocalTensor<T>& tensor)
    {
        const uint32_t slot = SlotOf(tensor.UbOffset(), "EnQue");
        if (count_ >= static_cast<uint32_t>(depth)) {
            emu::Fail("queue misuse: EnQue of a tensor into a queue already holding its depth of " +
                      std::to_string(depth));
        }
        queued_[(head_ + count_) % emu::kMaxQueueBuffers] = slot;
        enqueued_[slot] = emu::Block().pipes.Set(kProducer);
        ++count_;
        return true;
    }

    template <typename T>
    LocalTensor<T> DeQue()
    {
        if (count_ == 0) {
            emu::Fail("queue misuse: DeQue of an empty queue (EnQue missing)");
        }
        const uint32_t slot = queued_[head_];
        emu::Block().pipes.Wait(kConsumer, enqueued_[slot]);
        head_ = (head_ + 1) % emu::kMaxQueueBuffers;
        --count_;
        return LocalTensor<T>(offset_[slot], len_ / sizeof(T), pos);
    }

    template <typename T>
    void FreeTensor(LocalTensor<T>& tensor)
    {
        const uint32_t slot = SlotOf(tensor.UbOffset(), "FreeTensor");
        if (!inUse_[slot]) {
            emu::Fail("queue misuse: FreeTensor of a buffer that is not allocated");
        }
        inUse_[slot] = false;
        freed_[slot] = emu::Block().pipes.Set(kConsumer);
    }

    // Called by TPipe::InitBuffer.
    void EmuInit(uint8_t num, uint32_t len)
    {
        if (num_ != 0) {
            emu::Fail("queue misuse: InitBuffer called twice for one queue");
        }
        if (num == 0 || num > emu::kMaxQueueBuffers) {
            emu::Fail("queue misuse: InitBuffer num " + std::to_string(num) + " outside 1.." +
                      std::to_string(emu::kMaxQueueBuffers));
        }
        num_ = num;
        len_ = (len + 31) / 32 * 32;
        for (uint32_t i = 0; i < num; ++i) {
            offset_[i] = emu::UbReserve(len, "TPipe::InitBuffer(TQue)");
        }
    }

private:
    uint32_t SlotOf(uint32_t offset, const char* what) const
    {
        for (uint32_t i = 0; i < num_; ++i) {
            if (offset_[i] == offset) {
                return i;
            }
        }
        emu::Fail(std::string("queue misuse: ") + what + " of a tensor that is not one of this queue's buffers");
    }

    uint32_t num_ = 0;
    uint32_t len_ = 0;
    uint32_t offset_[emu::kMaxQueueBuffers] = {};
    bool inUse_[emu::kMaxQueueBuffers] = {};
    uint32_t queued_[emu::kMaxQueueBuffers] = {};
    emu::Flag enqueued_[emu::kMaxQueueBuffers];  // set by EnQue, waited for by DeQue
    emu::Flag freed_[emu::kMaxQueueBuffers];     // set by FreeTensor, waited for by the next AllocTensor
    uint32_t head_ = 0;
    uint32_t count_ = 0;
};

template <TPosition pos = TPosition::VECCALC>
class TBuf {
public:
    template <typename T>
    LocalTensor<T> Get() const
    {
        return LocalTensor<T>(offset_, len_ / sizeof(T), pos);
    }
    template <typename T>
    LocalTensor<T> Get(uint32_t len) const
    {
        if (static_cast<uint64_t>(len) * sizeof(T) > len_) {
            emu::Fail("UB bounds: TBuf::Get of " + std::to_string(len) + " elements from a " + std::to_string(len_) +
                      "-byte buffer");
        }
        return LocalTensor<T>(offset_, len, pos);
    }

    void EmuInit(uint32_t len)
    {
        len_ = (len + 31) / 32 * 32;
        offset_ = emu::UbReserve(len, "TPipe::InitBuffer(TBuf)");
    }

private:
    uint32_t offset_ = 0;
    uint32_t len_ = 0;
};

class TPipe {
public:
    template <class T>
    bool InitBuffer(T& que, uint8_t num, uint32_t len)
    {
        que.EmuInit(num, len);
        return true;
    }
    template <TPosition bufPos>
    bool InitBuffer(TBuf<bufPos>& buf, uint32_t len)
    {
        buf.EmuInit(len);
        return true;
    }
};

}  // namespace AscendC

#endif
