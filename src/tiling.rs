//! Tiling: how a kernel launch splits its work over the vector cores and its Unified Buffer.
//!
//! The structs mirror `kernels/tiling.h` field for field (`#[repr(C)]`, 4-byte fields, no padding) and
//! are uploaded to device memory as each kernel's last argument. `choose` derives a tiling from the shape,
//! the dtype and the [`DeviceProfile`]; `validate` rejects, before launch, what the chip would reject
//! (too much UB, misaligned tiles, repeat limits, zero blocks, more blocks than cores). A caller may build
//! or edit a tiling by hand and validate it.
//!
//! The three kernel tilings (de)serialise as flat JSON objects of their fields (serde; unknown fields
//! rejected): the format `ascend-cold tune --out` writes and `run --tiling`, the benches and
//! `serde_json::from_str::<BgmvShrinkTiling>` read. `candidates` lists the valid tilings `tune` searches,
//! and [`bench_shapes`] the shapes the benches time and `tune` is tested on.

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use crate::contracts::ColdParams;
pub use crate::contracts::{ExpandSegment, ExpandShape, ShrinkShape, MAX_EXPAND_SEGMENTS};
use crate::profile::DeviceProfile;
use crate::{Error, Result};

/// Element types the kernels take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
    /// IEEE binary32.
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u32 {
        match self {
            DType::F16 | DType::Bf16 => 2,
            DType::F32 => 4,
        }
    }
    /// The suffix of the kernel entry points (`bgmv_shrink_f16`, ...).
    pub fn suffix(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::F32 => "f32",
        }
    }
}

const BLOCK: u32 = 32; // UB and DataCopy granularity (bytes)
const REPEAT_F32: u32 = 64; // f32 elements per 256-byte vector repeat
/// bgmv_shrink's largest H tile (elements).
const MAX_SHRINK_TILE_H: u32 = 4096;
/// bgmv_shrink's rank rows per task: one WholeReduceSum repeat each, and a repeat count is a u8
/// (docs/KERNELS.md, "Ascend C API surface").
const MAX_SHRINK_RANK_PER_TASK: u32 = 255;
const MAX_REPEAT: u32 = 255; // level-0 repeatTime is uint8_t
/// Most vocabulary chunks per row in cold_score (a row's chunk records fit one 2 KiB UB buffer).
pub const COLD_MAX_SPLITS: u32 = 64;
/// Largest rank bgmv_expand takes: vLLM's LoRA ops go up to 128; the kernel folds a row in 64-lane chunks.
pub const MAX_EXPAND_RANK: u32 = 128;

/// A tiling's float field from JSON: a number that is finite as f32 (JSON has no NaN or infinity,
/// and a number past f32's range would otherwise read as one, which could not be written back).
fn finite_f32<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f32, D::Error> {
    let v = f64::deserialize(d)?;
    let f = v as f32;
    if f.is_finite() {
        Ok(f)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is outside the finite range of f32"
        )))
    }
}

fn round_up(v: u32, m: u32) -> u32 {
    v.div_ceil(m) * m
}
fn ub32(bytes: u64) -> u64 {
    bytes.div_ceil(32) * 32
}

fn check_blocks(block_num: u32, profile: &DeviceProfile) -> Result<()> {
    if block_num == 0 || block_num > profile.vector_cores {
        return Err(Error::parameter(
            "blockNum",
            format!("1..={} (vector cores)", profile.vector_cores),
            block_num,
        ));
    }
    Ok(())
}

fn check_ub(ub: u64, profile: &DeviceProfile) -> Result<()> {
    if ub > u64::from(profile.ub_bytes) {
        return Err(Error::parameter(
            "tiling UB",
            format!(
                "at most {} bytes of Unified Buffer per core",
                profile.ub_bytes
            ),
            format!("{ub} bytes"),
        ));
    }
    Ok(())
}

/// A dimension cut into `split` tasks of `per_task`: `1 <= split <= total` (the kernels multiply the
/// split by the batch in u32) and the tasks covering `total` (checked in u64, so a caller's absurd
/// values are an error, not an overflow).
fn check_split(
    name: &'static str,
    split: u32,
    per_task: u32,
    what: &str,
    total: u32,
) -> Result<()> {
    if split == 0
        || split > total
        || per_task == 0
        || u64::from(split) * u64::from(per_task) < u64::from(total)
    {
        return Err(Error::parameter(
            name,
            format!("1 <= split <= {what} {total} and split * per-task >= {total}"),
            format!("{split} * {per_task}"),
        ));
    }
    Ok(())
}

fn nonzero(what: &str, v: usize) -> Result<u32> {
    if v == 0 || v > u32::MAX as usize / 2 {
        return Err(Error::shape(what, "a dimension in 1..2^31", v));
    }
    Ok(v as u32)
}

/// `kernels/tiling.h` BgmvShrinkTiling.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BgmvShrinkTiling {
    pub batch: u32,
    pub hidden_in: u32,
    pub rank: u32,
    pub num_loras: u32,
    pub block_num: u32,
    pub rank_split: u32,
    pub rank_per_task: u32,
    pub tile_h: u32,
    #[serde(deserialize_with = "finite_f32")]
    pub scale: f32,
    #[serde(default)]
    pub reserved: u32,
}

impl BgmvShrinkTiling {
    /// UB bytes the kernel allocates for this tiling (mirrors BgmvShrink::Init): x's tile, the task's
    /// rank rows' tiles (double-buffered, then in f32), x's tile in f32, one f32 per (64-element chunk,
    /// rank row), the tile sum, accumulator and output, and a status word.
    pub fn ub_bytes(&self, dtype: DType) -> u64 {
        let tile = u64::from(self.tile_h);
        let rows = u64::from(self.rank_per_task);
        let sums = u64::from(self.rank_per_task.div_ceil(8) * 8) * 4;
        let chunks = u64::from(self.tile_h.div_ceil(REPEAT_F32));
        let s = u64::from(dtype.size());
        ub32(tile * s)
            + 2 * ub32(rows * tile * s)
            + ub32(rows * tile * 4)
            + ub32(tile * 4)
            + ub32(chunks * sums)
            + 3 * ub32(sums)
            + 32
    }

    /// A tiling for `shape`: rank chunks only while the re-read of x stays within 10% of the minimal
    /// traffic (more only if a chunk's rank rows would not fit the UB or one WholeReduceSum), and the
    /// largest H tile (a multiple of 64, at most 4096) with which a chunk's rank rows fit the UB.
    pub fn choose(
        shape: ShrinkShape,
        dtype: DType,
        scale: f32,
        profile: &DeviceProfile,
    ) -> Result<Self> {
        let batch = nonzero("bgmv_shrink batch", shape.batch)?;
        let h = nonzero("bgmv_shrink hidden_in", shape.hidden_in)?;
        let rank = nonzero("bgmv_shrink rank", shape.rank)?;
        let loras = nonzero("bgmv_shrink num_loras", shape.num_loras)?;
        let max_split = 1 + (rank + 1) / 10;
        let want = profile.vector_cores.div_ceil(batch);
        let mut wanted_split = want.min(max_split).min(rank).max(1);
        loop {
            let rank_per_task = rank.div_ceil(wanted_split);
            let rank_split = rank.div_ceil(rank_per_task);
            let mut t = BgmvShrinkTiling {
                batch,
                hidden_in: h,
                rank,
                num_loras: loras,
                block_num: (batch * rank_split).min(profile.vector_cores),
                rank_split,
                rank_per_task,
                tile_h: round_up(h, REPEAT_F32).min(MAX_SHRINK_TILE_H),
                scale,
                reserved: 0,
            };
            while t.tile_h > REPEAT_F32 && t.ub_bytes(dtype) > u64::from(profile.ub_bytes) {
                t.tile_h = round_up(t.tile_h / 2, REPEAT_F32);
            }
            let fits = rank_per_task <= MAX_SHRINK_RANK_PER_TASK
                && t.ub_bytes(dtype) <= u64::from(profile.ub_bytes);
            if fits || wanted_split >= rank {
                t.validate(shape, dtype, profile)?;
                return Ok(t);
            }
            wanted_split += 1;
        }
    }

    /// Checks this tiling against the shape and the chip.
    pub fn validate(
        &self,
        shape: ShrinkShape,
        dtype: DType,
        profile: &DeviceProfile,
    ) -> Result<()> {
        if dtype == DType::F32 {
            return Err(Error::parameter("dtype", "f16 or bf16", "f32"));
        }
        let given = (
            self.batch as usize,
            self.hidden_in as usize,
            self.rank as usize,
            self.num_loras as usize,
        );
        let expected = (shape.batch, shape.hidden_in, shape.rank, shape.num_loras);
        if given != expected {
            return Err(Error::shape(
                "bgmv_shrink tiling (B, H, R, L)",
                format!("{expected:?}"),
                format!("{given:?}"),
            ));
        }
        check_blocks(self.block_num, profile)?;
        if self.tile_h == 0 || self.tile_h % REPEAT_F32 != 0 {
            return Err(Error::parameter(
                "tileH",
                "a positive multiple of 64",
                self.tile_h,
            ));
        }
        check_split(
            "rankSplit * rankPerTask",
            self.rank_split,
            self.rank_per_task,
            "rank",
            self.rank,
        )?;
        if self.rank_per_task > MAX_SHRINK_RANK_PER_TASK {
            return Err(Error::parameter(
                "rankPerTask",
                format!(
                    "at most {MAX_SHRINK_RANK_PER_TASK} (one WholeReduceSum repeat per rank row)"
                ),
                self.rank_per_task,
            ));
        }
        check_ub(self.ub_bytes(dtype), profile)
    }
}

/// `kernels/tiling.h` BgmvExpandSegment: an [`ExpandSegment`] as the kernel reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ExpandSegmentTiling {
    pub row_start: u32,
    pub rows: u32,
    pub rank_start: u32,
    pub rank: u32,
}

/// `kernels/tiling.h` BgmvExpandTiling. `num_segments` 0 (the default, and what JSON without the
/// field means) is a dense B; otherwise `segments[..num_segments]` describe a block-diagonal one
/// ([`ExpandSegment`]) and the rest are zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BgmvExpandTiling {
    pub batch: u32,
    pub rank: u32,
    pub hidden_out: u32,
    pub hidden_full: u32,
    pub slice_offset: u32,
    pub num_loras: u32,
    pub block_num: u32,
    pub h_split: u32,
    pub h_per_task: u32,
    pub tile_h: u32,
    pub add_inputs: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_segments: u32,
    #[serde(default)]
    pub reserved: u32,
    #[serde(default, skip_serializing_if = "all_default")]
    pub segments: [ExpandSegmentTiling; MAX_EXPAND_SEGMENTS],
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn all_default(s: &[ExpandSegmentTiling; MAX_EXPAND_SEGMENTS]) -> bool {
    s.iter().all(|s| *s == ExpandSegmentTiling::default())
}

/// `segments` in the tiling's fields, once [`ExpandShape::check_segments`] has passed them (at most
/// [`MAX_EXPAND_SEGMENTS`], each inside the shape).
fn segment_fields(
    shape: ExpandShape,
    segments: &[ExpandSegment],
) -> Result<(u32, [ExpandSegmentTiling; MAX_EXPAND_SEGMENTS])> {
    shape.check_segments("bgmv_expand", segments)?;
    let mut fields = [ExpandSegmentTiling::default(); MAX_EXPAND_SEGMENTS];
    for (f, s) in fields.iter_mut().zip(segments) {
        *f = ExpandSegmentTiling {
            row_start: to_u32("segment row_start", s.row_start)?,
            rows: to_u32("segment rows", s.rows)?,
            rank_start: to_u32("segment rank_start", s.rank_start)?,
            rank: to_u32("segment rank", s.rank)?,
        };
    }
    Ok((segments.len() as u32, fields))
}

fn to_u32(what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::parameter(what, "at most u32::MAX", v))
}

impl BgmvExpandTiling {
    /// The segments the kernel reads: `segments[..num_segments]`, or one dense segment.
    fn kernel_segments(&self) -> impl Iterator<Item = ExpandSegmentTiling> + '_ {
        let n = (self.num_segments as usize).min(MAX_EXPAND_SEGMENTS);
        let dense = ExpandSegmentTiling {
            row_start: 0,
            rows: self.hidden_out,
            rank_start: 0,
            rank: self.rank,
        };
        (n == 0)
            .then_some(dense)
            .into_iter()
            .chain(self.segments[..n].iter().copied())
    }

    /// UB lanes per weight row: the widest segment's rank rounded up to 16 (32 bytes of f16).
    fn row_stride(&self) -> u64 {
        let widest = self.kernel_segments().map(|s| s.rank).max().unwrap_or(0);
        u64::from(round_up(widest, 16))
    }

    /// UB bytes the kernel allocates (mirrors BgmvExpand::Init).
    pub fn ub_bytes(&self, dtype: DType) -> u64 {
        let t = u64::from(self.tile_h);
        let w = t * self.row_stride();
        2 * ub32(w * u64::from(dtype.size()))
            + ub32(w * 4)
            + ub32(self.row_stride() * 4)
            + 2 * ub32(t * u64::from(dtype.size()))
            + 3 * ub32(t * 4)
            + 32
    }

    /// A tiling for `shape`: the largest tile of output rows (<= 248) that fits, H_out split over the
    /// cores the batch leaves idle.
    pub fn choose(
        shape: ExpandShape,
        dtype: DType,
        add_inputs: bool,
        profile: &DeviceProfile,
    ) -> Result<Self> {
        Self::choose_segmented(shape, &[], dtype, add_inputs, profile)
    }

    /// As [`Self::choose`] for a B stored as `segments` ([`ExpandSegment`]; none: dense).
    pub fn choose_segmented(
        shape: ExpandShape,
        segments: &[ExpandSegment],
        dtype: DType,
        add_inputs: bool,
        profile: &DeviceProfile,
    ) -> Result<Self> {
        let (num_segments, segment_fields) = segment_fields(shape, segments)?;
        let batch = nonzero("bgmv_expand batch", shape.batch)?;
        let rank = nonzero("bgmv_expand rank", shape.rank)?;
        let h_out = nonzero("bgmv_expand hidden_out", shape.hidden_out)?;
        let mut t = BgmvExpandTiling {
            batch,
            rank,
            hidden_out: h_out,
            hidden_full: nonzero("bgmv_expand hidden_full", shape.hidden_full)?,
            slice_offset: shape.slice_offset as u32,
            num_loras: nonzero("bgmv_expand num_loras", shape.num_loras)?,
            block_num: 1,
            h_split: 1,
            h_per_task: h_out,
            tile_h: 248,
            add_inputs: add_inputs as u32,
            num_segments,
            reserved: 0,
            segments: segment_fields,
        };
        while t.tile_h > 8 && t.ub_bytes(dtype) > u64::from(profile.ub_bytes) * 3 / 4 {
            t.tile_h -= 8;
        }
        let want = profile
            .vector_cores
            .div_ceil(batch)
            .min(h_out.div_ceil(t.tile_h))
            .max(1);
        t.h_per_task = round_up(h_out.div_ceil(want), t.tile_h);
        t.h_split = h_out.div_ceil(t.h_per_task);
        t.block_num = (batch * t.h_split).min(profile.vector_cores);
        t.validate_segmented(shape, segments, dtype, profile)?;
        Ok(t)
    }

    /// As [`Self::validate`], and the tiling's segments are `segments`.
    pub fn validate_segmented(
        &self,
        shape: ExpandShape,
        segments: &[ExpandSegment],
        dtype: DType,
        profile: &DeviceProfile,
    ) -> Result<()> {
        let given = (self.num_segments, self.segments);
        let expected = segment_fields(shape, segments)?;
        if given != expected {
            return Err(Error::shape(
                "bgmv_expand tiling segments",
                format!("{expected:?}"),
                format!("{given:?}"),
            ));
        }
        self.validate(shape, dtype, profile)
    }

    /// Checks this tiling against the shape and the chip (its segments included).
    pub fn validate(
        &self,
        shape: ExpandShape,
        dtype: DType,
        profile: &DeviceProfile,
    ) -> Result<()> {
        if dtype == DType::F32 {
            return Err(Error::parameter("dtype", "f16 or bf16", "f32"));
        }
        let given = (
            self.batch as usize,
            self.rank as usize,
            self.hidden_out as usize,
            self.hidden_full as usize,
            self.slice_offset as usize,
            self.num_loras as usize,
        );
        let expected = (
            shape.batch,
            shape.rank,
            shape.hidden_out,
            shape.hidden_full,
            shape.slice_offset,
            shape.num_loras,
        );
        if given != expected {
            return Err(Error::shape(
                "bgmv_expand tiling (B, R, H_out, H_full, off, L)",
                format!("{expected:?}"),
                format!("{given:?}"),
            ));
        }
        if shape.slice_offset + shape.hidden_out > shape.hidden_full {
            return Err(Error::shape(
                "bgmv_expand slice",
                format!("offset + H_out <= H_full = {}", shape.hidden_full),
                shape.slice_offset + shape.hidden_out,
            ));
        }
        if self.num_segments as usize > MAX_EXPAND_SEGMENTS
            || self.segments[self.num_segments as usize..]
                .iter()
                .any(|s| *s != ExpandSegmentTiling::default())
        {
            return Err(Error::parameter(
                "num_segments",
                format!("0..={MAX_EXPAND_SEGMENTS}, the segments past it zero"),
                format!("{} of {:?}", self.num_segments, self.segments),
            ));
        }
        let mut segments = [ExpandSegment::default(); MAX_EXPAND_SEGMENTS];
        for (s, f) in segments.iter_mut().zip(&self.segments) {
            *s = ExpandSegment {
                row_start: f.row_start as usize,
                rows: f.rows as usize,
                rank_start: f.rank_start as usize,
                rank: f.rank as usize,
            };
        }
        shape.check_segments("bgmv_expand", &segments[..self.num_segments as usize])?;
        if let Some(wide) = self.kernel_segments().find(|s| s.rank > MAX_EXPAND_RANK) {
            return Err(Error::parameter(
                "rank",
                format!("1..={MAX_EXPAND_RANK} per segment (vLLM's LoRA ranks)"),
                wide.rank,
            ));
        }
        check_blocks(self.block_num, profile)?;
        if self.tile_h == 0 || self.tile_h > MAX_REPEAT || self.tile_h % 8 != 0 {
            return Err(Error::parameter(
                "tileH",
                "a multiple of 8 in 8..=255 (WholeReduceSum repeatTime)",
                self.tile_h,
            ));
        }
        check_split(
            "hSplit * hPerTask",
            self.h_split,
            self.h_per_task,
            "H_out",
            self.hidden_out,
        )?;
        check_ub(self.ub_bytes(dtype), profile)
    }
}

/// `kernels/tiling.h` ColdScoreTiling.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ColdScoreTiling {
    pub rows: u32,
    pub vocab: u32,
    pub block_num: u32,
    pub splits: u32,
    pub chunk_len: u32,
    pub tile_len: u32,
    pub resident: u32,
    pub write_scores: u32,
    #[serde(deserialize_with = "finite_f32")]
    pub ln_alpha: f32,
    #[serde(deserialize_with = "finite_f32")]
    pub beta: f32,
    pub ws_bytes: u32,
    /// Elements from one expert row to the next (the op sets it from its layout).
    #[serde(default)]
    pub e_row_stride: u32,
    /// Elements from one amateur row to the next (the op sets it from its layout).
    #[serde(default)]
    pub a_row_stride: u32,
    #[serde(default)]
    pub reserved: u32,
}

impl ColdScoreTiling {
    /// UB bytes the kernel allocates (mirrors ColdScore::Init).
    pub fn ub_bytes(&self, dtype: DType) -> u64 {
        let t = u64::from(self.tile_len);
        let repeats = self.tile_len.div_ceil(REPEAT_F32) as u64;
        let resident = if self.resident != 0 {
            ub32(u64::from(self.chunk_len) * u64::from(dtype.size()))
        } else {
            0
        };
        let (score_tiles, tile_records) = if self.write_scores != 0 {
            (2, 0)
        } else {
            // max, best, idx, e-at-best per tile of a range, each array a whole number of 32-byte blocks
            let tiles = u64::from(self.chunk_len.div_ceil(self.tile_len.max(1)));
            (1, 4 * tiles.div_ceil(8) * 32)
        };
        resident
            + 4 * ub32(t * u64::from(dtype.size()))
            + score_tiles * ub32(t * 4)
            + 3 * ub32(t * 4)
            + t.div_ceil(256) * 32
            + 2 * (2 * repeats).div_ceil(8) * 32
            + 32
            + 32
            + COLD_MAX_SPLITS as u64 * 32
            + tile_records
    }

    /// Workspace bytes needed when `splits > 1` (one 32-byte record per row and chunk); at least 32.
    pub fn workspace_bytes(&self) -> usize {
        (self.ws_bytes as usize).max(32)
    }

    /// A tiling for logits [rows, vocab]: rows over cores, and when rows < cores the vocabulary split into
    /// chunks of at least 4096 elements over the idle cores; with the score row and splits == 1, the row
    /// kept resident in UB when it fits (tokens only, the one-pass scan needs no residency).
    pub fn choose(
        rows: usize,
        vocab: usize,
        dtype: DType,
        params: ColdParams,
        write_scores: bool,
        profile: &DeviceProfile,
    ) -> Result<Self> {
        let n = nonzero("cold_score rows", rows)?;
        let v = nonzero("cold_score vocab", vocab)?;
        let splits = if n >= profile.vector_cores {
            1
        } else {
            profile
                .vector_cores
                .div_ceil(n)
                .min(v.div_ceil(4096))
                .clamp(1, COLD_MAX_SPLITS)
        };
        let tile_len = 2048;
        let chunk_len = round_up(v.div_ceil(splits), tile_len);
        let splits = v.div_ceil(chunk_len);
        let mut t = ColdScoreTiling {
            rows: n,
            vocab: v,
            block_num: (n * splits).min(profile.vector_cores),
            splits,
            chunk_len,
            tile_len,
            resident: 0,
            write_scores: write_scores as u32,
            ln_alpha: params.ln_alpha(),
            beta: params.beta(),
            ws_bytes: if splits > 1 { n * splits * BLOCK } else { 0 },
            e_row_stride: v,
            a_row_stride: v,
            reserved: 0,
        };
        if splits == 1 && write_scores {
            t.resident = 1;
            if t.ub_bytes(dtype) > u64::from(profile.ub_bytes) {
                t.resident = 0;
            }
        }
        t.validate(rows, vocab, dtype, params, profile)?;
        Ok(t)
    }

    /// Checks this tiling against the shape, the parameters it is launched with (its `ln_alpha` and
    /// `beta` must be `params`'s: the op writes them so) and the chip.
    pub fn validate(
        &self,
        rows: usize,
        vocab: usize,
        dtype: DType,
        params: ColdParams,
        profile: &DeviceProfile,
    ) -> Result<()> {
        let carried = (self.ln_alpha.to_bits(), self.beta.to_bits());
        if carried != (params.ln_alpha().to_bits(), params.beta().to_bits()) {
            return Err(Error::parameter(
                "cold_score tiling lnAlpha / beta",
                format!(
                    "the launch's parameters: ln(alpha) {} and beta {}",
                    params.ln_alpha(),
                    params.beta()
                ),
                format!("{} and {}", self.ln_alpha, self.beta),
            ));
        }
        if (self.rows as usize, self.vocab as usize) != (rows, vocab) {
            return Err(Error::shape(
                "cold_score tiling [N, V]",
                format!("[{rows}, {vocab}]"),
                format!("[{}, {}]", self.rows, self.vocab),
            ));
        }
        for (name, stride) in [
            ("eRowStride", self.e_row_stride),
            ("aRowStride", self.a_row_stride),
        ] {
            if stride < self.vocab {
                return Err(Error::parameter(
                    name,
                    format!("at least V = {} (rows must not overlap)", self.vocab),
                    stride,
                ));
            }
        }
        check_blocks(self.block_num, profile)?;
        if self.tile_len == 0 || self.tile_len % REPEAT_F32 != 0 {
            return Err(Error::parameter(
                "tileLen",
                "a positive multiple of 64",
                self.tile_len,
            ));
        }
        if self.splits == 0
            || self.splits > COLD_MAX_SPLITS
            || self.chunk_len == 0
            || self.chunk_len % self.tile_len != 0
            || u64::from(self.splits) * u64::from(self.chunk_len) < u64::from(self.vocab)
        {
            return Err(Error::parameter(
                "splits / chunkLen",
                "1..=64 chunks of a multiple of tileLen covering V",
                format!("{} x {}", self.splits, self.chunk_len),
            ));
        }
        if self.resident != 0 && (self.splits != 1 || self.write_scores == 0) {
            return Err(Error::parameter(
                "resident",
                "0 unless splits == 1 and the score row is written",
                self.resident,
            ));
        }
        let ws_need = u64::from(self.rows) * u64::from(self.splits) * u64::from(BLOCK);
        if self.splits > 1 && u64::from(self.ws_bytes) < ws_need {
            return Err(Error::parameter(
                "wsBytes",
                format!(">= {ws_need} (32 bytes per row and chunk)"),
                self.ws_bytes,
            ));
        }
        check_ub(self.ub_bytes(dtype), profile)
    }
}

/// `kernels/tiling.h` SmokeAddTiling.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct SmokeAddTiling {
    pub n: u32,
    pub tile_len: u32,
    pub block_num: u32,
    pub reserved: u32,
}

// ---- Search space (`ascend-cold tune`) and the benched shapes -----------------------------------------

/// Keeps the valid, distinct tilings of `all`, the default first.
fn keep_valid<T: PartialEq + Copy>(default: T, all: Vec<T>, valid: impl Fn(&T) -> bool) -> Vec<T> {
    let mut out = vec![default];
    for t in all {
        if valid(&t) && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Splits tried for a dimension of `n` work items: powers of two up to `max`, and `max` itself.
fn split_counts(max: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..7).map(|k| 1u32 << k).filter(|&s| s <= max).collect();
    if max >= 1 && !v.contains(&max) {
        v.push(max);
    }
    v
}

impl BgmvShrinkTiling {
    /// Every tiling `tune` considers for `shape`: the default ([`Self::choose`]) first, then rank splits
    /// (powers of two up to the rank and the core count) times H tiles (512 to 8192 elements), all on as
    /// many blocks as there are tasks (at most the cores). Each one passes [`Self::validate`].
    ///
    /// # Errors
    /// As [`Self::choose`] (a shape no tiling can run).
    pub fn candidates(
        shape: ShrinkShape,
        dtype: DType,
        scale: f32,
        profile: &DeviceProfile,
    ) -> Result<Vec<Self>> {
        let default = Self::choose(shape, dtype, scale, profile)?;
        let rank = default.rank;
        let h64 = round_up(default.hidden_in, REPEAT_F32);
        let mut all = Vec::new();
        for split in split_counts(rank.min(profile.vector_cores)) {
            let rank_per_task = rank.div_ceil(split);
            let rank_split = rank.div_ceil(rank_per_task);
            for tile_h in [512, 1024, 2048, 4096, 8192] {
                let tasks = default.batch * rank_split;
                all.push(BgmvShrinkTiling {
                    block_num: tasks.min(profile.vector_cores),
                    rank_split,
                    rank_per_task,
                    tile_h: tile_h.min(h64),
                    ..default
                });
            }
        }
        Ok(keep_valid(default, all, |t| {
            t.validate(shape, dtype, profile).is_ok()
        }))
    }
}

impl BgmvExpandTiling {
    /// Every tiling `tune` considers: the default first, then tiles of 8 to 248 output rows times splits
    /// of H_out (powers of two up to the cores), on as many blocks as there are tasks (at most the cores).
    ///
    /// # Errors
    /// As [`Self::choose`].
    pub fn candidates(
        shape: ExpandShape,
        dtype: DType,
        add_inputs: bool,
        profile: &DeviceProfile,
    ) -> Result<Vec<Self>> {
        let default = Self::choose(shape, dtype, add_inputs, profile)?;
        let h_out = default.hidden_out;
        let mut all = Vec::new();
        for tile_h in [8, 16, 32, 64, 128, 248] {
            for want in split_counts(profile.vector_cores) {
                let h_per_task = round_up(h_out.div_ceil(want), tile_h);
                let h_split = h_out.div_ceil(h_per_task);
                all.push(BgmvExpandTiling {
                    block_num: (default.batch * h_split).min(profile.vector_cores),
                    h_split,
                    h_per_task,
                    tile_h,
                    ..default
                });
            }
        }
        Ok(keep_valid(default, all, |t| {
            t.validate(shape, dtype, profile).is_ok()
        }))
    }
}

impl ColdScoreTiling {
    /// Every tiling `tune` considers: the default first, then tiles of 512 to 8192 elements times
    /// vocabulary splits (1 to 64 chunks), with the row resident in UB where allowed and it fits.
    ///
    /// # Errors
    /// As [`Self::choose`].
    pub fn candidates(
        rows: usize,
        vocab: usize,
        dtype: DType,
        params: ColdParams,
        write_scores: bool,
        profile: &DeviceProfile,
    ) -> Result<Vec<Self>> {
        let default = Self::choose(rows, vocab, dtype, params, write_scores, profile)?;
        let (n, v) = (default.rows, default.vocab);
        let mut all = Vec::new();
        for tile_len in [512, 1024, 2048, 4096, 8192] {
            for want in [1, 2, 4, 8, 16, 24, 32, 48, 64] {
                let want = want.min(COLD_MAX_SPLITS);
                let chunk_len = round_up(v.div_ceil(want), tile_len);
                let splits = v.div_ceil(chunk_len);
                for resident in [0, 1] {
                    if resident == 1 && !(splits == 1 && write_scores) {
                        continue;
                    }
                    all.push(ColdScoreTiling {
                        block_num: n.saturating_mul(splits).min(profile.vector_cores),
                        splits,
                        chunk_len,
                        tile_len,
                        resident,
                        ws_bytes: if splits > 1 { n * splits * BLOCK } else { 0 },
                        ..default
                    });
                }
            }
        }
        Ok(keep_valid(default, all, |t| {
            t.validate(rows, vocab, dtype, params, profile).is_ok()
        }))
    }
}

/// The shapes the benches time and `tune` is tested on: what LoRA runtimes see (hidden 2048 to 8192,
/// rank 8 to 64, batch 1 to 64, 1 to 16 adapters; vocabularies of Llama 2 (32000), StarCoder / SmolLM
/// (49152) and Qwen2 (151936)). `full = false` is the short list a default bench run (2 cores) affords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchShapes {
    /// bgmv_shrink shapes.
    pub shrink: Vec<ShrinkShape>,
    /// bgmv_expand shapes (the slice is the whole row).
    pub expand: Vec<ExpandShape>,
    /// cold_score shapes.
    pub cold: Vec<crate::contracts::ColdShape>,
}

/// See [`BenchShapes`].
pub fn bench_shapes(full: bool) -> BenchShapes {
    use crate::contracts::ColdShape;
    let mut lora: Vec<(usize, usize, usize, usize)> = vec![(1, 4096, 16, 1), (16, 4096, 16, 4)];
    let mut vocab = vec![(1, 151_936), (8, 151_936)];
    if full {
        lora.extend([
            (1, 2048, 8, 1),
            (4, 2048, 8, 2),
            (8, 4096, 32, 8),
            (32, 8192, 64, 16),
            (64, 4096, 16, 16),
            (64, 8192, 64, 16),
        ]);
        vocab.extend([
            (1, 32_000),
            (8, 32_000),
            (64, 32_000),
            (1, 49_152),
            (8, 49_152),
            (64, 151_936),
        ]);
    }
    BenchShapes {
        shrink: lora
            .iter()
            .map(|&(batch, hidden_in, rank, num_loras)| ShrinkShape {
                batch,
                hidden_in,
                rank,
                num_loras,
            })
            .collect(),
        expand: lora
            .iter()
            .map(|&(batch, hidden, rank, num_loras)| ExpandShape {
                batch,
                rank,
                hidden_out: hidden,
                hidden_full: hidden,
                slice_offset: 0,
                num_loras,
            })
            .collect(),
        cold: vocab
            .iter()
            .map(|&(rows, vocab)| ColdShape { rows, vocab })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    mod c {
        include!(concat!(env!("OUT_DIR"), "/tiling_layout.rs"));
    }

    /// `size_of` and each listed field's `offset_of` equal the constants build.rs measured from
    /// tiling.h (named `<TYPE>_SIZE` and `<TYPE>_<FIELD>_OFFSET`), so Rust and the kernels agree on
    /// every byte of the tiling they exchange.
    macro_rules! assert_layout {
        ($ty:ty, $size:ident, [$($field:ident => $offset:ident),+ $(,)?]) => {
            assert_eq!(size_of::<$ty>(), c::$size, stringify!($ty));
            $(
                assert_eq!(
                    offset_of!($ty, $field),
                    c::$offset,
                    concat!(stringify!($ty), ".", stringify!($field))
                );
            )+
        };
    }

    #[test]
    fn layouts_match_tiling_h() {
        assert_layout!(BgmvShrinkTiling, BGMVSHRINKTILING_SIZE, [
            batch => BGMVSHRINKTILING_BATCH_OFFSET,
            hidden_in => BGMVSHRINKTILING_HIDDENIN_OFFSET,
            rank => BGMVSHRINKTILING_RANK_OFFSET,
            num_loras => BGMVSHRINKTILING_NUMLORAS_OFFSET,
            block_num => BGMVSHRINKTILING_BLOCKNUM_OFFSET,
            rank_split => BGMVSHRINKTILING_RANKSPLIT_OFFSET,
            rank_per_task => BGMVSHRINKTILING_RANKPERTASK_OFFSET,
            tile_h => BGMVSHRINKTILING_TILEH_OFFSET,
            scale => BGMVSHRINKTILING_SCALE_OFFSET,
        ]);
        assert_layout!(BgmvExpandTiling, BGMVEXPANDTILING_SIZE, [
            batch => BGMVEXPANDTILING_BATCH_OFFSET,
            rank => BGMVEXPANDTILING_RANK_OFFSET,
            hidden_out => BGMVEXPANDTILING_HIDDENOUT_OFFSET,
            hidden_full => BGMVEXPANDTILING_HIDDENFULL_OFFSET,
            slice_offset => BGMVEXPANDTILING_SLICEOFFSET_OFFSET,
            num_loras => BGMVEXPANDTILING_NUMLORAS_OFFSET,
            block_num => BGMVEXPANDTILING_BLOCKNUM_OFFSET,
            h_split => BGMVEXPANDTILING_HSPLIT_OFFSET,
            h_per_task => BGMVEXPANDTILING_HPERTASK_OFFSET,
            tile_h => BGMVEXPANDTILING_TILEH_OFFSET,
            add_inputs => BGMVEXPANDTILING_ADDINPUTS_OFFSET,
            num_segments => BGMVEXPANDTILING_NUMSEGMENTS_OFFSET,
            segments => BGMVEXPANDTILING_SEGMENTS_OFFSET,
        ]);
        assert_layout!(ExpandSegmentTiling, BGMVEXPANDSEGMENT_SIZE, [
            row_start => BGMVEXPANDSEGMENT_ROWSTART_OFFSET,
            rows => BGMVEXPANDSEGMENT_ROWS_OFFSET,
            rank_start => BGMVEXPANDSEGMENT_RANKSTART_OFFSET,
            rank => BGMVEXPANDSEGMENT_RANK_OFFSET,
        ]);
        assert_layout!(ColdScoreTiling, COLDSCORETILING_SIZE, [
            rows => COLDSCORETILING_ROWS_OFFSET,
            vocab => COLDSCORETILING_VOCAB_OFFSET,
            block_num => COLDSCORETILING_BLOCKNUM_OFFSET,
            splits => COLDSCORETILING_SPLITS_OFFSET,
            chunk_len => COLDSCORETILING_CHUNKLEN_OFFSET,
            tile_len => COLDSCORETILING_TILELEN_OFFSET,
            resident => COLDSCORETILING_RESIDENT_OFFSET,
            write_scores => COLDSCORETILING_WRITESCORES_OFFSET,
            ln_alpha => COLDSCORETILING_LNALPHA_OFFSET,
            beta => COLDSCORETILING_BETA_OFFSET,
            ws_bytes => COLDSCORETILING_WSBYTES_OFFSET,
            e_row_stride => COLDSCORETILING_EROWSTRIDE_OFFSET,
            a_row_stride => COLDSCORETILING_AROWSTRIDE_OFFSET,
        ]);
        assert_layout!(SmokeAddTiling, SMOKEADDTILING_SIZE, [
            n => SMOKEADDTILING_N_OFFSET,
            tile_len => SMOKEADDTILING_TILELEN_OFFSET,
            block_num => SMOKEADDTILING_BLOCKNUM_OFFSET,
        ]);
    }

    #[test]
    fn validate_rejects_what_the_chip_would() {
        let p = DeviceProfile::ascend_910b();
        let shape = ShrinkShape {
            batch: 4,
            hidden_in: 4096,
            rank: 16,
            num_loras: 2,
        };
        let t = BgmvShrinkTiling::choose(shape, DType::F16, 1.0, &p).unwrap();
        // Regression: a caller's absurd split used to overflow u32 (a panic in debug builds).
        let absurd = BgmvShrinkTiling {
            rank_split: u32::MAX,
            rank_per_task: 3,
            ..t
        };
        let err = absurd
            .validate(shape, DType::F16, &p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rankSplit"), "{err}");
        let bad = BgmvShrinkTiling { tile_h: 100, ..t };
        assert!(matches!(
            bad.validate(shape, DType::F16, &p),
            Err(Error::BadParameter { name: "tileH", .. })
        ));
        let bad = BgmvShrinkTiling { block_num: 0, ..t };
        assert!(bad.validate(shape, DType::F16, &p).is_err());
        let bad = BgmvShrinkTiling {
            block_num: p.vector_cores + 1,
            ..t
        };
        assert!(bad.validate(shape, DType::F16, &p).is_err());
        let bad = BgmvShrinkTiling {
            tile_h: 64 * 1024,
            ..t
        };
        let err = bad.validate(shape, DType::F16, &p).unwrap_err().to_string();
        assert!(err.contains("Unified Buffer"), "{err}");

        let es = ExpandShape {
            batch: 2,
            rank: 16,
            hidden_out: 1000,
            hidden_full: 1200,
            slice_offset: 100,
            num_loras: 3,
        };
        let t = BgmvExpandTiling::choose(es, DType::Bf16, true, &p).unwrap();
        assert!(BgmvExpandTiling { tile_h: 256, ..t }
            .validate(es, DType::Bf16, &p)
            .is_err());
        let big = ExpandShape { rank: 128, ..es };
        let t = BgmvExpandTiling::choose(big, DType::F16, true, &p).unwrap();
        assert!(t.tile_h >= 8 && t.ub_bytes(DType::F16) <= u64::from(p.ub_bytes));
        let too_big = ExpandShape { rank: 129, ..es };
        assert!(BgmvExpandTiling::choose(too_big, DType::F16, true, &p).is_err());

        let params = ColdParams::new(0.1, 0.5).unwrap();
        let t = ColdScoreTiling::choose(1, 32003, DType::F32, params, true, &p).unwrap();
        assert!(t.splits > 1 && t.resident == 0);
        assert!(ColdScoreTiling { resident: 1, ..t }
            .validate(1, 32003, DType::F32, params, &p)
            .is_err());
        assert!(ColdScoreTiling { ws_bytes: 32, ..t }
            .validate(1, 32003, DType::F32, params, &p)
            .is_err());
        let other = ColdParams::new(0.5, 0.5).unwrap();
        let err = t.validate(1, 32003, DType::F32, other, &p).unwrap_err();
        assert!(err.to_string().contains("lnAlpha / beta"), "{err}");
        let t = ColdScoreTiling::choose(64, 32000, DType::F16, params, true, &p).unwrap();
        assert_eq!((t.splits, t.resident), (1, 1));
        let t = ColdScoreTiling::choose(64, 151936, DType::F32, params, false, &p).unwrap();
        assert_eq!((t.splits, t.resident), (1, 0));
    }

    /// An expand tiling as `tune --out` wrote it before segments (with `reserved`, without the
    /// segment fields) still reads as the dense tiling; a dense tiling writes no segment fields, and
    /// a segmented one reads back as it was.
    #[test]
    fn expand_tiling_json_before_and_after_segments() {
        let old = r#"{ "batch": 2, "rank": 16, "hidden_out": 1000, "hidden_full": 1200,
            "slice_offset": 100, "num_loras": 3, "block_num": 8, "h_split": 4, "h_per_task": 248,
            "tile_h": 248, "add_inputs": 1, "reserved": 0 }"#;
        let t: BgmvExpandTiling = serde_json::from_str(old).unwrap();
        assert_eq!((t.num_segments, t.rank, t.tile_h), (0, 16, 248));
        let dense = serde_json::to_string(&t).unwrap();
        assert!(!dense.contains("segments"), "{dense}");
        let shape = ExpandShape {
            batch: 2,
            rank: 24,
            hidden_out: 960,
            hidden_full: 960,
            slice_offset: 0,
            num_loras: 1,
        };
        let segments = [
            ExpandSegment {
                row_start: 0,
                rows: 576,
                rank_start: 0,
                rank: 16,
            },
            ExpandSegment {
                row_start: 768,
                rows: 192,
                rank_start: 16,
                rank: 8,
            },
        ];
        let p = DeviceProfile::ascend_910b();
        let t =
            BgmvExpandTiling::choose_segmented(shape, &segments, DType::Bf16, false, &p).unwrap();
        let back: BgmvExpandTiling =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        back.validate_segmented(shape, &segments, DType::Bf16, &p)
            .unwrap();
        // The same tiling with other segments is refused.
        assert!(back
            .validate_segmented(shape, &segments[..1], DType::Bf16, &p)
            .is_err());
    }
}
