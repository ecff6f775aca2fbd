//! Dequantisation of ggml blocks to f32.
//!
//! Block layouts (facts from llama.cpp `ggml/src/ggml-common.h` and gguf-py `gguf/quants.py`),
//! all little-endian, 32 values per block for the quantised types:
//!
//! | type | bytes | layout | value `i` (`j = i mod 16`) |
//! |------|-------|--------|-----------------------------|
//! | Q8_0 | 34 | `f16 d`, `i8 qs[32]` | `qs[i] * d` |
//! | Q4_0 | 18 | `f16 d`, `u8 qs[16]` | `((qs[j] & 15) - 8) * d` for `i < 16`, `((qs[j] >> 4) - 8) * d` after |
//! | Q4_1 | 20 | `f16 d`, `f16 m`, `u8 qs[16]` | `(qs[j] & 15) * d + m` for `i < 16`, `(qs[j] >> 4) * d + m` after |
//! | Q5_0 | 22 | `f16 d`, `u32 qh`, `u8 qs[16]` | `(q - 16) * d`, `q` = the Q4 nibble with bit `i` of `qh` as bit 4 |
//! | Q5_1 | 24 | `f16 d`, `f16 m`, `u32 qh`, `u8 qs[16]` | `q * d + m`, `q` as for Q5_0 |
//!
//! F32, F16 and BF16 are element types (BF16: the high half of an f32). The operations and their
//! order match gguf-py's `dequantize_blocks`, so results are bit-identical to it.
//!
//! Every load runs this, so it is parallel (rayon, over chunks of whole blocks) and written as
//! fixed-size loops the compiler vectorises.

use super::ggml_type::GgmlType;
use half::{bf16, f16};
use rayon::prelude::*;

/// Values per parallel work item: big enough to amortise scheduling, a multiple of every block size.
const CHUNK: usize = 32 * 1024;

/// The element types [`dequantize_into`] accepts.
pub const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
];

/// Whether [`dequantize_into`] handles `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    SUPPORTED.contains(&ty)
}

/// Decodes `src` (whole blocks of `ty`) into `dst`; `dst.len()` values.
///
/// Errors (as a message for the caller to attach to its file and tensor) when `ty` is not supported
/// or `src` is not exactly the size of `dst.len()` values.
pub fn dequantize_into(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), String> {
    if !is_supported(ty) {
        let names: Vec<_> = SUPPORTED.iter().map(|t| t.name()).collect();
        return Err(format!(
            "ggml type {ty} cannot be dequantised yet (supported: {})",
            names.join(", ")
        ));
    }
    let block = ty.block_size() as usize;
    let bytes = ty.type_size() as usize;
    if dst.len() % block != 0 || src.len() != dst.len() / block * bytes {
        return Err(format!(
            "{} bytes of {ty} do not hold {} values",
            src.len(),
            dst.len()
        ));
    }
    let src_chunk = CHUNK / block * bytes;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(src_chunk))
        .for_each(|(d, s)| decode(ty, s, d));
    Ok(())
}

/// Decodes one chunk; `s` holds exactly the blocks for `d`.
fn decode(ty: GgmlType, s: &[u8], d: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in d.iter_mut().zip(s.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in d.iter_mut().zip(s.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in d.iter_mut().zip(s.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in d.chunks_exact_mut(32).zip(s.chunks_exact(34)) {
                let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let qs: &[u8; 32] = b[2..34].try_into().unwrap_or(&[0; 32]);
                for (o, &q) in o.iter_mut().zip(qs) {
                    *o = f32::from(q as i8) * scale;
                }
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in d.chunks_exact_mut(32).zip(s.chunks_exact(18)) {
                let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let qs: &[u8; 16] = b[2..18].try_into().unwrap_or(&[0; 16]);
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    lo[j] = f32::from((qs[j] & 0x0f) as i8 - 8) * scale;
                    hi[j] = f32::from((qs[j] >> 4) as i8 - 8) * scale;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in d.chunks_exact_mut(32).zip(s.chunks_exact(20)) {
                let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let min = f16::from_le_bytes([b[2], b[3]]).to_f32();
                let qs: &[u8; 16] = b[4..20].try_into().unwrap_or(&[0; 16]);
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    lo[j] = f32::from(qs[j] & 0x0f) * scale + min;
                    hi[j] = f32::from(qs[j] >> 4) * scale + min;
                }
            }
        }
        GgmlType::Q5_0 => {
            for (o, b) in d.chunks_exact_mut(32).zip(s.chunks_exact(22)) {
                let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let qs: &[u8; 16] = b[6..22].try_into().unwrap_or(&[0; 16]);
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    let l = (qs[j] & 0x0f) | (((qh >> j) & 1) as u8) << 4;
                    let h = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) as u8) << 4;
                    lo[j] = f32::from(l as i8 - 16) * scale;
                    hi[j] = f32::from(h as i8 - 16) * scale;
                }
            }
        }
        GgmlType::Q5_1 => {
            for (o, b) in d.chunks_exact_mut(32).zip(s.chunks_exact(24)) {
                let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let min = f16::from_le_bytes([b[2], b[3]]).to_f32();
                let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                let qs: &[u8; 16] = b[8..24].try_into().unwrap_or(&[0; 16]);
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    let l = (qs[j] & 0x0f) | (((qh >> j) & 1) as u8) << 4;
                    let h = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) as u8) << 4;
                    lo[j] = f32::from(l) * scale + min;
                    hi[j] = f32::from(h) * scale + min;
                }
            }
        }
        // dequantize_into rejected every other type before splitting the work.
        _ => unreachable!("unsupported type {ty} reached the block decoder"),
    }
}
