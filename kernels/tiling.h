// Tiling structs: one per kernel, uploaded to device memory and passed as the LAST kernel argument.
// Plain repr(C) PODs of 4-byte fields (no implicit padding); src/tiling.rs mirrors them field for field
// and a test checks size and offsets against the values build.rs extracts from this header.
// Scalars (scale, ln(alpha), beta) and flags are fields because every kernel argument is a GM address.
#ifndef ASCEND_COLD_TILING_H
#define ASCEND_COLD_TILING_H

#include <stdint.h>

// Per-row status words (uint32, one per batch row) written by bgmv_* and cold_score for every row they
// own, so the host never has to clear them: 0 = ok, else COLD_STATUS_FAULT | (code << 24).
#define COLD_STATUS_FAULT 0x80000000u
#define COLD_STATUS_BAD_ADAPTER_INDEX 1u  // bgmv: idx[b] >= num_loras; the row was skipped
#define COLD_STATUS_NON_FINITE 2u         // cold_score: NaN or inf in e or a; token -1, best NaN
#define COLD_STATUS_SCORE_OVERFLOW 3u     // cold_score: finite e, a, winning score not finite; token -2

typedef struct BgmvShrinkTiling {
    uint32_t batch;        // B
    uint32_t hiddenIn;     // H
    uint32_t rank;         // R
    uint32_t numLoras;     // L
    uint32_t blockNum;     // blocks launched; tasks (row, rank chunk) are dealt round-robin
    uint32_t rankSplit;    // rank chunks per row: each re-reads x[b], so traffic = (R + rankSplit) / (R + 1)
    uint32_t rankPerTask;  // ceil(R / rankSplit)
    uint32_t tileH;        // H elements per tile, a multiple of 64 (one 256-byte f32 repeat)
    float scale;           // y = scale * A x
    uint32_t reserved;
} BgmvShrinkTiling;

// A block-diagonal B stored without its zeros, one segment per diagonal block: segment j maps x lanes
// rankStart..rankStart+rank to output rows rowStart..rowStart+rows of the slice, its weights [L, rows, rank]
// stored after segment j-1's.
#define COLD_EXPAND_MAX_SEGMENTS 4
typedef struct BgmvExpandSegment {
    uint32_t rowStart;     // first output row of the slice (0..H_out)
    uint32_t rows;         // output rows
    uint32_t rankStart;    // first x lane read (0..R)
    uint32_t rank;         // x lanes read, 1..128
} BgmvExpandSegment;

typedef struct BgmvExpandTiling {
    uint32_t batch;        // B
    uint32_t rank;         // R, the x row (1..128 when numSegments = 0: one or two 64-lane f32 repeats)
    uint32_t hiddenOut;    // H_out
    uint32_t hiddenFull;   // H_full (row stride of y)
    uint32_t sliceOffset;  // first column of y written
    uint32_t numLoras;     // L
    uint32_t blockNum;     // blocks launched; tasks (row, H_out chunk) round-robin
    uint32_t hSplit;       // H_out chunks per row
    uint32_t hPerTask;     // ceil(H_out / hSplit), a multiple of tileH except the last
    uint32_t tileH;        // output rows per tile: 8..255 (one WholeReduceSum repeat each), multiple of 8
    uint32_t addInputs;    // 1: y += B x; 0: y = B x
    uint32_t numSegments;  // 0: B dense [L, H_out, R]; 1..4: B is segments[0..numSegments] (sorted, disjoint
                           // rows; rows no segment covers are not written)
    uint32_t reserved;
    BgmvExpandSegment segments[COLD_EXPAND_MAX_SEGMENTS];
} BgmvExpandTiling;

typedef struct ColdScoreTiling {
    uint32_t rows;         // N
    uint32_t vocab;        // V
    uint32_t blockNum;     // blocks launched; tasks (row, chunk) round-robin
    uint32_t splits;       // vocabulary chunks per row; 1: one launch, else three (local, score, reduce)
    uint32_t chunkLen;     // elements per chunk (multiple of tileLen except the last)
    uint32_t tileLen;      // elements per tile, a multiple of 64
    uint32_t resident;     // 1 (score row, splits 1 only): e stays in UB between the max and the score pass
    uint32_t writeScores;  // 1: write the masked score row f32 [N, V]
    float lnAlpha;         // ln(alpha) <= 0
    float beta;            // >= 0
    uint32_t wsBytes;      // workspace (splits > 1): one 32-byte record per (row, chunk), N * splits * 32
    uint32_t eRowStride;   // elements from one expert row to the next (>= V; V when dense)
    uint32_t aRowStride;   // elements from one amateur row to the next (>= V): interleaved rows need no copy
    uint32_t reserved;
} ColdScoreTiling;

typedef struct SmokeAddTiling {
    uint32_t n;         // elements
    uint32_t tileLen;   // elements per tile, a multiple of 8 (32 bytes)
    uint32_t blockNum;  // blocks launched
    uint32_t reserved;
} SmokeAddTiling;

#endif
