// The pipe model: which pipe touched which UB bytes, and what orders one pipe after another. The AIV core issues
// to four pipes that run concurrently: S (scalar GetValue / SetValue), V (vector instructions), MTE2 (GM->UB
// copies), MTE3 (UB->GM copies). An access to UB bytes last touched by another pipe, or last written by the same
// non-scalar pipe, needs a synchronisation in between; without one the chip may run them in either order
// (asc-devkit docs/zh/api/SIMD-API/基础API/同步控制/核内同步/, PipeBarrier(ISASI).md and 关键特性说明.md). A
// read after a same-pipe read, or a write after a same-pipe read, is ordered by the pipe itself.
//
// Every operation gets a sequence number on its pipe. done[P][Q] is the highest operation of Q known complete
// before P's next operation; a synchronisation raises it: PipeBarrier<PIPE_ALL> for every pair, PipeBarrier<X>
// for X after X, a flag (TQue EnQue -> DeQue, FreeTensor -> AllocTensor, an API's internal SetFlag / WaitFlag)
// for the waiting pipe, with what the signalling pipe itself knew (so waits are transitive). The UB is shadowed
// as a sorted list of byte ranges, each holding its last write and its last read per pipe.
#ifndef ASCEND_COLD_EMU_HAZARD_H
#define ASCEND_COLD_EMU_HAZARD_H

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>
#include <string>

namespace emu {

[[noreturn]] void Fail(const std::string& rule);

enum Pipe : int { kPipeS = 0, kPipeV, kPipeMte2, kPipeMte3, kPipes };

inline const char* PipeName(int pipe)
{
    static const char* const kNames[kPipes] = {"S", "V", "MTE2", "MTE3"};
    return kNames[pipe];
}

// What a signalling pipe had done and knew when it set a flag.
struct Flag {
    int pipe = -1;  // -1: no flag set
    uint64_t issued = 0;
    uint64_t knew[kPipes] = {};
};

class PipeModel {
public:
    // A fresh model for a block of `ubBytes` of UB, keeping the shadow's storage (one model per host
    // thread serves every block it runs: no allocation per block).
    void Reset(uint32_t ubBytes)
    {
        shadow_.clear();
        shadow_.push_back(Entry{0, Range{ubBytes, -1, {}, {}}});
        std::fill(std::begin(issued_), std::end(issued_), 0);
        for (auto& row : done_) {
            std::fill(std::begin(row), std::end(row), 0);
        }
    }

    uint64_t Issue(int pipe) { return ++issued_[pipe]; }

    void Barrier(int pipe)
    {
        for (int p = 0; p < kPipes; ++p) {
            if (pipe == kPipes || p == pipe) {
                for (int q = 0; q < kPipes; ++q) {
                    if (pipe == kPipes || q == pipe) {
                        done_[p][q] = issued_[q];
                    }
                }
            }
        }
    }

    Flag Set(int pipe) const
    {
        Flag f;
        f.pipe = pipe;
        f.issued = issued_[pipe];
        std::copy(done_[pipe], done_[pipe] + kPipes, f.knew);
        return f;
    }

    void Wait(int pipe, const Flag& f)
    {
        if (f.pipe < 0) {
            return;
        }
        done_[pipe][f.pipe] = std::max(done_[pipe][f.pipe], f.issued);
        for (int q = 0; q < kPipes; ++q) {
            done_[pipe][q] = std::max(done_[pipe][q], f.knew[q]);
        }
    }

    // Operation `seq` of `pipe` (`call` names it) reads or writes UB bytes [begin, end).
    void Touch(int pipe, uint64_t seq, bool write, uint32_t begin, uint32_t end, const char* call)
    {
        if (begin >= end) {
            return;
        }
        const size_t first = Split(begin, 0);
        const size_t last = Split(end, first);  // one past the last range inside [begin, end)
        for (size_t i = first; i < last; ++i) {
            Range& r = shadow_[i].range;
            const uint32_t lo = shadow_[i].begin, hi = r.end;
            if (r.writer >= 0 && !Ordered(pipe, r.writer, r.written.seq, true)) {
                Report(pipe, call, write, lo, hi, r.writer, r.written.call, true);
            }
            if (write) {
                for (int q = 0; q < kPipes; ++q) {
                    if (r.read[q].seq != 0 && !Ordered(pipe, q, r.read[q].seq, false)) {
                        Report(pipe, call, write, lo, hi, q, r.read[q].call, false);
                    }
                }
                r.writer = pipe;
                r.written = Access{seq, call};
                std::fill(std::begin(r.read), std::end(r.read), Access{});
            } else {
                r.read[pipe] = Access{seq, call};
            }
        }
        Merge(first, last);
    }

private:
    struct Access {
        uint64_t seq = 0;
        const char* call = nullptr;
        bool operator==(const Access& o) const { return seq == o.seq && call == o.call; }
    };
    struct Range {
        uint32_t end;
        int writer;  // -1: never written in this block
        Access written;
        Access read[kPipes];
        bool SameAs(const Range& o) const
        {
            return writer == o.writer && written == o.written && std::equal(read, read + kPipes, o.read);
        }
    };

    // Whether `pipe`'s next operation is ordered after operation `seq` of `other`: the scalar unit is in order,
    // and a pipe orders a read or a write after its own reads but needs a barrier after its own writes.
    bool Ordered(int pipe, int other, uint64_t seq, bool afterWrite) const
    {
        if (pipe == other && (pipe == kPipeS || !afterWrite)) {
            return true;
        }
        return done_[pipe][other] >= seq;
    }

    // The UB is shadowed as a flat vector of ranges sorted by start, covering [0, ubBytes) without gaps: a
    // block holds tens of ranges, so binary search and a short memmove beat a node-based map.
    struct Entry {
        uint32_t begin;
        Range range;
    };

    // The index of the first range at or after index `from` that starts at or after `at`.
    size_t First(uint32_t at, size_t from) const
    {
        return static_cast<size_t>(std::lower_bound(shadow_.begin() + static_cast<std::ptrdiff_t>(from), shadow_.end(),
                                                    at, [](const Entry& e, uint32_t a) { return e.begin < a; }) -
                                   shadow_.begin());
    }

    // Makes `at` the start of a range (unless it is past the shadowed UB); returns the index of the first range
    // starting at or after `at`. No range before index `from` starts at or after `at`.
    size_t Split(uint32_t at, size_t from)
    {
        const size_t next = First(at, from);
        if (next < shadow_.size() && shadow_[next].begin == at) {
            return next;
        }
        if (next == 0 || shadow_[next - 1].range.end <= at) {
            return next;
        }
        Entry right = shadow_[next - 1];
        right.begin = at;
        shadow_[next - 1].range.end = at;
        shadow_.insert(shadow_.begin() + static_cast<std::ptrdiff_t>(next), right);
        return next;
    }

    // Joins neighbouring ranges holding the same accesses among those at indices first - 1 .. last (the ranges a
    // touch changed and their two neighbours).
    void Merge(size_t first, size_t last)
    {
        size_t keep = first > 0 ? first - 1 : 0;
        size_t read = keep + 1;
        for (; read < shadow_.size() && read <= last; ++read) {
            Entry& prev = shadow_[keep];
            if (prev.range.end == shadow_[read].begin && prev.range.SameAs(shadow_[read].range)) {
                prev.range.end = shadow_[read].range.end;
            } else {
                shadow_[++keep] = shadow_[read];
            }
        }
        shadow_.erase(shadow_.begin() + static_cast<std::ptrdiff_t>(keep + 1),
                      shadow_.begin() + static_cast<std::ptrdiff_t>(read));
    }

    [[noreturn]] static void Report(int pipe, const char* call, bool write, uint32_t lo, uint32_t hi, int other,
                                    const char* otherCall, bool otherWrote)
    {
        Fail(std::string("pipe hazard: ") + call + " (" + PipeName(pipe) + ") " + (write ? "writes" : "reads") +
             " UB [" + std::to_string(lo) + ", " + std::to_string(hi) + ") " + (otherWrote ? "written" : "read") +
             " by " + otherCall + " (" + PipeName(other) +
             ") with no synchronisation in between (EnQue/DeQue, FreeTensor/AllocTensor or PipeBarrier on the " +
             "right pipes)");
    }

    std::vector<Entry> shadow_;
    uint64_t issued_[kPipes] = {};
    uint64_t done_[kPipes][kPipes] = {};
};

}  // namespace emu

#endif
