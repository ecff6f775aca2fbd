//! `y = x @ w^T` for a batch of tokens, register-blocked over weight rows and tokens.
//!
//! Decode reads every weight once per step, so at batch 1 the matmul is bound by memory bandwidth;
//! the batch must then cost little more than batch 1. Each rayon task takes a block of weight rows,
//! widens it (bf16 -> f32, exact) once into an L2-resident scratch, and runs a micro-kernel over
//! [`ROWS`] weight rows x up to [`TOKENS`] tokens: per 8-column step it loads each token's 8
//! activations once and each weight row's 8 values once, and issues `ROWS * TOKENS` fused
//! multiply-adds into independent accumulators, so the compute per weight byte grows with the batch
//! while the loads grow only with `ROWS + TOKENS`.
//!
//! Determinism: the value for a (weight row, token) pair is computed by the same sequence of
//! operations whatever the batch, the block it falls in, or the thread: one 8-lane accumulator
//! stepping through the columns in order, the same horizontal reduction ([`reduce8`]), then the
//! leftover columns (`cols % 8`) in order. Batched rows therefore equal rows computed alone, bit for
//! bit. The kernel is chosen once per process (AVX2+FMA, or the portable one), never per call.
//!
//! CPU facts: `_mm256_fmadd_ps` needs the FMA extension and `_mm256_cvtepu16_epi32` / `_mm256_slli_epi32`
//! AVX2 (Intel Intrinsics Guide); bf16 is the top 16 bits of an IEEE binary32, so widening is a
//! 16-bit left shift into a 32-bit lane (exact).

use rayon::prelude::*;

/// Weight rows per micro-kernel call.
pub(super) const ROWS: usize = 4;
/// Most tokens per micro-kernel call: `ROWS * TOKENS` = 12 accumulators plus `TOKENS` activation
/// vectors fit the 16 AVX2 registers (weights are FMA memory operands).
pub(super) const TOKENS: usize = 3;
/// Tokens per pass over a task's rows (keeps a prefill's activation tile in L2).
const TOKEN_TILE: usize = 64;
/// Weight elements per rayon task, about: 16 Ki elements is 32 KiB of bf16 (64 KiB widened), which
/// keeps the widened block in L2 and makes a task take tens of microseconds at batch 1, well above
/// rayon's per-task cost, while a 576 x 576 matrix still gives ~20 tasks to balance two busy cores.
const TASK_ELEMS: usize = 16 * 1024;
/// Below this many multiply-adds the matmul runs on the calling thread.
const SERIAL_WORK: usize = 1 << 16;

/// A weight matrix's storage, row-major `[rows, cols]`.
#[derive(Clone, Copy)]
pub(super) enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

/// Which micro-kernel this process uses (decided once, so every call rounds the same way).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    Portable,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2Fma;
        }
        Isa::Portable
    })
}

/// A raw output pointer shared by the tasks, each writing a disjoint set of elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only used to write elements that no other task writes (each task owns a
// distinct range of weight rows, hence distinct output columns), while the owning `&mut [f32]` is
// borrowed for the whole parallel section.
unsafe impl Send for OutPtr {}
// SAFETY: as above; shared references to `OutPtr` only copy the pointer.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper rather than its raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y[t * rows + r] = sum_c w[r, c] * x[t * cols + c]` for `n` tokens: `x` is `[n, cols]`, `y` is
/// `[n, rows]` (token-major, written in full).
pub(super) fn matmul(w: Weights<'_>, rows: usize, cols: usize, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n * cols, "activations");
    assert_eq!(y.len(), n * rows, "output");
    match w {
        Weights::F32(v) => assert_eq!(v.len(), rows * cols, "weights"),
        Weights::Bf16(v) => assert_eq!(v.len(), rows * cols, "weights"),
    }
    if rows == 0 || n == 0 {
        return;
    }
    let rows_per_task = (TASK_ELEMS / cols.max(1)).div_ceil(ROWS).max(1) * ROWS;
    let tasks = rows.div_ceil(rows_per_task);
    let out = OutPtr(y.as_mut_ptr());
    let isa = isa();
    let run = |task: usize, scratch: &mut Vec<f32>| {
        let r0 = task * rows_per_task;
        let r1 = (r0 + rows_per_task).min(rows);
        // SAFETY: `out` points at `n * rows` f32 (checked above, borrowed mutably for this whole
        // function); this task writes only columns `r0..r1` of it, and tasks have disjoint ranges.
        unsafe { task_block(isa, w, cols, r0, r1, x, n, out.get(), rows, scratch) };
    };
    if rows * cols * n < SERIAL_WORK || tasks == 1 {
        let mut scratch = Vec::new();
        for task in 0..tasks {
            run(task, &mut scratch);
        }
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each_init(Vec::new, |scratch, task| run(task, scratch));
    }
}

/// Weight rows `r0..r1` against all `n` tokens, written into columns `r0..r1` of the `[n, stride]`
/// output at `out`.
///
/// # Safety
/// `out` must be valid for writes of `n * stride` f32, `r1 <= stride`, and no other thread may access
/// columns `r0..r1` of it during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn task_block(
    isa: Isa,
    w: Weights<'_>,
    cols: usize,
    r0: usize,
    r1: usize,
    x: &[f32],
    n: usize,
    out: *mut f32,
    stride: usize,
    scratch: &mut Vec<f32>,
) {
    let nr = r1 - r0;
    // bf16 rows are widened once per task into `scratch` when several token blocks will reuse them;
    // with a single block (decode at batch <= TOKENS, CoLD's 2 rows included) the AVX2 kernel widens
    // in registers instead, saving a store and reload of every weight. Widening is exact, so both
    // ways give the same bits.
    let rows: Weights<'_> = match w {
        Weights::F32(v) => Weights::F32(&v[r0 * cols..r1 * cols]),
        Weights::Bf16(v) if n <= TOKENS && isa != Isa::Portable => {
            Weights::Bf16(&v[r0 * cols..r1 * cols])
        }
        Weights::Bf16(v) => {
            scratch.resize(nr * cols, 0.0);
            widen(isa, &v[r0 * cols..r1 * cols], scratch);
            Weights::F32(scratch)
        }
    };
    let mut t0 = 0;
    while t0 < n {
        let t1 = (t0 + TOKEN_TILE).min(n);
        let mut r = 0;
        while r < nr {
            let rb = (nr - r).min(ROWS);
            let wb = match rows {
                Weights::F32(v) => Weights::F32(&v[r * cols..(r + rb) * cols]),
                Weights::Bf16(v) => Weights::Bf16(&v[r * cols..(r + rb) * cols]),
            };
            let mut t = t0;
            while t < t1 {
                let tb = (t1 - t).min(TOKENS);
                let xb = &x[t * cols..(t + tb) * cols];
                let mut acc = [[0f32; TOKENS]; ROWS];
                micro(isa, wb, rb, xb, tb, cols, &mut acc);
                for (i, accr) in acc.iter().enumerate().take(rb) {
                    for (j, &v) in accr.iter().enumerate().take(tb) {
                        // SAFETY: token `t + j < n`, column `r0 + r + i < r1 <= stride`: inside the
                        // `n * stride` buffer, in this task's columns (the caller's contract).
                        unsafe { *out.add((t + j) * stride + r0 + r + i) = v };
                    }
                }
                t += tb;
            }
            r += rb;
        }
        t0 = t1;
    }
}

/// bf16 bits -> f32, exactly.
fn widen(isa: Isa, src: &[u16], dst: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen when the CPU reports AVX2 and FMA.
        Isa::Avx2Fma => unsafe { x86::widen(src, dst) },
        Isa::Portable => widen_portable(src, dst),
    }
}

fn widen_portable(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s as u32) << 16);
    }
}

/// `acc[i][j] = w_i . x_j` for `rb <= ROWS` rows of `w` and `tb <= TOKENS` rows of `x`, each `cols`
/// long.
fn micro(
    isa: Isa,
    w: Weights<'_>,
    rb: usize,
    x: &[f32],
    tb: usize,
    cols: usize,
    acc: &mut [[f32; TOKENS]; ROWS],
) {
    match (isa, w) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen when the CPU reports AVX2 and FMA.
        (Isa::Avx2Fma, Weights::F32(w)) => unsafe { x86::micro(w, rb, x, tb, cols, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        (Isa::Avx2Fma, Weights::Bf16(w)) => unsafe { x86::micro(w, rb, x, tb, cols, acc) },
        (Isa::Portable, Weights::F32(w)) => portable::micro(w, rb, x, tb, cols, acc),
        (Isa::Portable, Weights::Bf16(w)) => portable::micro(w, rb, x, tb, cols, acc),
    }
}

/// A weight element: f32, or bf16 bits widened exactly.
trait Elem: Copy {
    fn to_f32(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Elem for u16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
}

/// The fixed horizontal reduction of an 8-lane accumulator (shared by both kernels so they agree on
/// the order: halves, then quarters, then the pair).
#[inline(always)]
fn reduce8(l: [f32; 8]) -> f32 {
    let a = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

mod portable {
    use super::{reduce8, Elem, ROWS, TOKENS};

    /// One (row, token) pair, the portable way: 8 lanes of separate multiply and add.
    #[inline(always)]
    fn pair<W: Elem>(w: &[W], x: &[f32], cols: usize) -> f32 {
        let main = cols / 8 * 8;
        let mut l = [0f32; 8];
        for (wc, xc) in w[..main].chunks_exact(8).zip(x[..main].chunks_exact(8)) {
            for k in 0..8 {
                l[k] += wc[k].to_f32() * xc[k];
            }
        }
        let mut s = reduce8(l);
        for c in main..cols {
            s += w[c].to_f32() * x[c];
        }
        s
    }

    pub(super) fn micro<W: Elem>(
        w: &[W],
        rb: usize,
        x: &[f32],
        tb: usize,
        cols: usize,
        acc: &mut [[f32; TOKENS]; ROWS],
    ) {
        debug_assert!(w.len() == rb * cols && x.len() == tb * cols);
        for (i, accr) in acc.iter_mut().enumerate().take(rb) {
            for (j, a) in accr.iter_mut().enumerate().take(tb) {
                *a = pair(
                    &w[i * cols..(i + 1) * cols],
                    &x[j * cols..(j + 1) * cols],
                    cols,
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{reduce8, Elem, ROWS, TOKENS};
    use std::arch::x86_64::*;

    /// A weight element the AVX2 kernel loads 8 at a time as f32.
    pub(super) trait Load8: Elem {
        /// # Safety
        /// AVX2 must be available and 8 elements readable at `p`.
        unsafe fn load8(p: *const Self) -> __m256;
    }

    impl Load8 for f32 {
        #[inline(always)]
        unsafe fn load8(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable f32 at `p` and AVX; the load is unaligned.
            unsafe { _mm256_loadu_ps(p) }
        }
    }

    impl Load8 for u16 {
        #[inline(always)]
        unsafe fn load8(p: *const u16) -> __m256 {
            // SAFETY: the caller guarantees 8 readable u16 (16 bytes) at `p` and AVX2; the load is
            // unaligned. Zero-extend to 32 bits and shift into the high half: the exact f32.
            unsafe {
                let h = _mm_loadu_si128(p as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
    }

    /// bf16 -> f32 eight at a time: zero-extend each 16-bit value into a 32-bit lane, shift left 16.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn widen(src: &[u16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let main = n / 8 * 8;
        let mut i = 0;
        while i < main {
            // SAFETY: `i + 8 <= main <= n`, so 8 u16 are readable at `src[i..]` and 8 f32 writable
            // at `dst[i..]`; unaligned load/store intrinsics have no alignment requirement.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                let f = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(f));
            }
            i += 8;
        }
        super::widen_portable(&src[main..n], &mut dst[main..n]);
    }

    #[inline(always)]
    fn lanes(v: __m256) -> [f32; 8] {
        // SAFETY: `__m256` and `[f32; 8]` have the same size, and every bit pattern is a valid f32.
        unsafe { std::mem::transmute::<__m256, [f32; 8]>(v) }
    }

    /// The micro-kernel for a fixed block shape, `R` rows x `T` tokens.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `w` must hold `R * cols` and `x` `T * cols` values.
    #[inline(always)]
    unsafe fn block<W: Load8, const R: usize, const T: usize>(
        w: &[W],
        x: &[f32],
        cols: usize,
        acc: &mut [[f32; TOKENS]; ROWS],
    ) {
        debug_assert!(w.len() >= R * cols && x.len() >= T * cols);
        let main = cols / 8 * 8;
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        // SAFETY: AVX is implied by AVX2, which the caller guarantees.
        let zero = unsafe { _mm256_setzero_ps() };
        let mut a = [[zero; T]; R];
        let mut c = 0;
        while c < main {
            // SAFETY: `c + 8 <= main <= cols`, so lanes `c..c + 8` of every row `i < R` of `w` and
            // token `j < T` of `x` are in bounds (lengths checked by the caller); loads are unaligned.
            unsafe {
                let mut xv = [zero; T];
                for (j, v) in xv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(xp.add(j * cols + c));
                }
                for (i, ai) in a.iter_mut().enumerate() {
                    let wv = W::load8(wp.add(i * cols + c));
                    for (j, aij) in ai.iter_mut().enumerate() {
                        *aij = _mm256_fmadd_ps(wv, xv[j], *aij);
                    }
                }
            }
            c += 8;
        }
        for i in 0..R {
            for j in 0..T {
                let mut s = reduce8(lanes(a[i][j]));
                for k in main..cols {
                    s += w[i * cols + k].to_f32() * x[j * cols + k];
                }
                acc[i][j] = s;
            }
        }
    }

    /// Dispatch on the block shape (constant shapes keep the accumulators in registers).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `w` must hold `rb * cols` and `x` `tb * cols` values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn micro<W: Load8>(
        w: &[W],
        rb: usize,
        x: &[f32],
        tb: usize,
        cols: usize,
        acc: &mut [[f32; TOKENS]; ROWS],
    ) {
        assert!(w.len() >= rb * cols && x.len() >= tb * cols);
        // SAFETY (every arm): AVX2 and FMA are enabled for this function (the caller's contract),
        // and the lengths were asserted just above for the shape passed.
        unsafe {
            match (rb, tb) {
                (4, 3) => block::<W, 4, 3>(w, x, cols, acc),
                (4, 2) => block::<W, 4, 2>(w, x, cols, acc),
                (4, 1) => block::<W, 4, 1>(w, x, cols, acc),
                (3, 3) => block::<W, 3, 3>(w, x, cols, acc),
                (3, 2) => block::<W, 3, 2>(w, x, cols, acc),
                (3, 1) => block::<W, 3, 1>(w, x, cols, acc),
                (2, 3) => block::<W, 2, 3>(w, x, cols, acc),
                (2, 2) => block::<W, 2, 2>(w, x, cols, acc),
                (2, 1) => block::<W, 2, 1>(w, x, cols, acc),
                (1, 3) => block::<W, 1, 3>(w, x, cols, acc),
                (1, 2) => block::<W, 1, 2>(w, x, cols, acc),
                (1, 1) => block::<W, 1, 1>(w, x, cols, acc),
                _ => unreachable!("block shape {rb}x{tb}"),
            }
        }
    }
}
