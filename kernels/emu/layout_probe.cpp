// Built and run by build.rs on the host: prints `Struct.field offset` and `Struct size` lines for every
// tiling struct, which build.rs turns into Rust constants that src/tiling.rs's layout test compares against.
#include <cstddef>
#include <cstdio>

#include "../tiling.h"

#define SIZE(S) std::printf("%s size %zu\n", #S, sizeof(S));
#define FIELD(S, F) std::printf("%s.%s offset %zu\n", #S, #F, offsetof(S, F));

int main()
{
    SIZE(BgmvShrinkTiling)
    FIELD(BgmvShrinkTiling, batch) FIELD(BgmvShrinkTiling, hiddenIn) FIELD(BgmvShrinkTiling, rank)
    FIELD(BgmvShrinkTiling, numLoras) FIELD(BgmvShrinkTiling, blockNum) FIELD(BgmvShrinkTiling, rankSplit)
    FIELD(BgmvShrinkTiling, rankPerTask) FIELD(BgmvShrinkTiling, tileH) FIELD(BgmvShrinkTiling, scale)
    SIZE(BgmvExpandTiling)
    FIELD(BgmvExpandTiling, batch) FIELD(BgmvExpandTiling, rank) FIELD(BgmvExpandTiling, hiddenOut)
    FIELD(BgmvExpandTiling, hiddenFull) FIELD(BgmvExpandTiling, sliceOffset) FIELD(BgmvExpandTiling, numLoras)
    FIELD(BgmvExpandTiling, blockNum) FIELD(BgmvExpandTiling, hSplit) FIELD(BgmvExpandTiling, hPerTask)
    FIELD(BgmvExpandTiling, tileH) FIELD(BgmvExpandTiling, addInputs) FIELD(BgmvExpandTiling, numSegments)
    FIELD(BgmvExpandTiling, segments)
    SIZE(BgmvExpandSegment)
    FIELD(BgmvExpandSegment, rowStart) FIELD(BgmvExpandSegment, rows) FIELD(BgmvExpandSegment, rankStart)
    FIELD(BgmvExpandSegment, rank)
    SIZE(ColdScoreTiling)
    FIELD(ColdScoreTiling, rows) FIELD(ColdScoreTiling, vocab) FIELD(ColdScoreTiling, blockNum)
    FIELD(ColdScoreTiling, splits) FIELD(ColdScoreTiling, chunkLen) FIELD(ColdScoreTiling, tileLen)
    FIELD(ColdScoreTiling, resident) FIELD(ColdScoreTiling, writeScores) FIELD(ColdScoreTiling, lnAlpha)
    FIELD(ColdScoreTiling, beta) FIELD(ColdScoreTiling, wsBytes) FIELD(ColdScoreTiling, eRowStride)
    FIELD(ColdScoreTiling, aRowStride)
    SIZE(SmokeAddTiling)
    FIELD(SmokeAddTiling, n) FIELD(SmokeAddTiling, tileLen) FIELD(SmokeAddTiling, blockNum)
    return 0;
}
