// smoke_add_f32: z = x + y over n f32 elements, through the queue API (CopyIn / Compute / CopyOut).
// The first kernel to launch on a new board: it exercises argument passing, GetBlockIdx, DataCopy,
// DataCopyPad for the tail, TQue synchronisation and one vector instruction, and nothing else.
// Arguments: x, y, z (f32 [n]) and the tiling: uint32 {n, tileLen (multiple of 8), blockNum, reserved}.
// Traffic: 12 n bytes + 16 per block. UB: 3 queues x 2 x tileLen x 4 bytes (48 KiB for tileLen 2048).
#include "kernel_common.h"

using namespace AscendC;

class SmokeAdd {
public:
    static constexpr uint32_t kBufferNum = 2;
    static constexpr uint32_t kBlockElems = 8;  // f32 elements per 32-byte block

    __aicore__ inline void Init(GM_ADDR x, GM_ADDR y, GM_ADDR z, GM_ADDR tiling)
    {
        cold::LoadTiling(tiling_, tiling);
        xGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(x), tiling_.n);
        yGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(y), tiling_.n);
        zGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(z), tiling_.n);
        pipe_.InitBuffer(xQue_, kBufferNum, tiling_.tileLen * sizeof(float));
        pipe_.InitBuffer(yQue_, kBufferNum, tiling_.tileLen * sizeof(float));
        pipe_.InitBuffer(zQue_, kBufferNum, tiling_.tileLen * sizeof(float));
    }

    __aicore__ inline void Process()
    {
        const uint32_t tiles = cold::CeilDiv(tiling_.n, tiling_.tileLen);
        for (uint32_t t = GetBlockIdx(); t < tiles; t += GetBlockNum()) {
            const uint32_t off = t * tiling_.tileLen;
            const uint32_t len = cold::Min(tiling_.tileLen, tiling_.n - off);
            CopyIn(off, len);
            Compute(len);
            CopyOut(off, len);
        }
    }

private:
    __aicore__ inline void CopyIn(uint32_t off, uint32_t len)
    {
        LocalTensor<float> x = xQue_.AllocTensor<float>();
        LocalTensor<float> y = yQue_.AllocTensor<float>();
        if (len % kBlockElems == 0) {
            DataCopy(x, xGm_[off], len);
            DataCopy(y, yGm_[off], len);
        } else {
            CopyInTail(x, y, off, len);
        }
        xQue_.EnQue(x);
        yQue_.EnQue(y);
    }

    __aicore__ inline void CopyInTail(const LocalTensor<float>& x, const LocalTensor<float>& y, uint32_t off, uint32_t len)
    {
        const DataCopyExtParams params(1, len * sizeof(float), 0, 0, 0);
        DataCopyPad(x, xGm_[off], params, DataCopyPadExtParams<float>(false, 0, 0, 0.0f));
        DataCopyPad(y, yGm_[off], params, DataCopyPadExtParams<float>(false, 0, 0, 0.0f));
    }

    __aicore__ inline void Compute(uint32_t len)
    {
        LocalTensor<float> x = xQue_.DeQue<float>();
        LocalTensor<float> y = yQue_.DeQue<float>();
        LocalTensor<float> z = zQue_.AllocTensor<float>();
        Add(z, x, y, static_cast<int32_t>(len));
        zQue_.EnQue(z);
        xQue_.FreeTensor(x);
        yQue_.FreeTensor(y);
    }

    __aicore__ inline void CopyOut(uint32_t off, uint32_t len)
    {
        LocalTensor<float> z = zQue_.DeQue<float>();
        if (len % kBlockElems == 0) {
            DataCopy(zGm_[off], z, len);
        } else {
            DataCopyPad(zGm_[off], z, DataCopyExtParams(1, len * sizeof(float), 0, 0, 0));
        }
        zQue_.FreeTensor(z);
    }

    SmokeAddTiling tiling_;
    TPipe pipe_;
    TQue<TPosition::VECIN, kBufferNum> xQue_, yQue_;
    TQue<TPosition::VECOUT, kBufferNum> zQue_;
    GlobalTensor<float> xGm_, yGm_, zGm_;
};

extern "C" __global__ __aicore__ void smoke_add_f32(GM_ADDR x, GM_ADDR y, GM_ADDR z, GM_ADDR tiling)
{
    SmokeAdd op;
    op.Init(x, y, z, tiling);
    op.Process();
}
