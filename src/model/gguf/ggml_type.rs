//! ggml tensor element types: ids, names and block geometry.
//!
//! Facts from gguf-py `gguf/constants.py` (`GGMLQuantizationType`, `GGML_QUANT_SIZES`, QK_K = 256),
//! which mirror llama.cpp `ggml/include/ggml.h` (`enum ggml_type`) and `ggml/src/ggml.c` (type traits).
//! The reader needs every type's geometry to bound-check any file, even one whose types
//! [`super::dequant`] cannot decode.

use std::fmt;

/// A ggml tensor element type, numbered as in gguf-py `GGMLQuantizationType`.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// 32-value blocks: f16 scale, 16 bytes of 4-bit quants (offset 8).
    Q4_0,
    /// 32-value blocks: f16 scale, f16 minimum, 16 bytes of 4-bit quants.
    Q4_1,
    /// 32-value blocks, 5-bit.
    Q5_0,
    /// 32-value blocks, 5-bit with minimum.
    Q5_1,
    /// 32-value blocks: f16 scale, 32 signed bytes.
    Q8_0,
    /// 32-value blocks, 8-bit with sum.
    Q8_1,
    /// k-quant, 2-bit.
    Q2_K,
    /// k-quant, 3-bit.
    Q3_K,
    /// k-quant, 4-bit.
    Q4_K,
    /// k-quant, 5-bit.
    Q5_K,
    /// k-quant, 6-bit.
    Q6_K,
    /// k-quant, 8-bit.
    Q8_K,
    /// i-quant.
    IQ2_XXS,
    /// i-quant.
    IQ2_XS,
    /// i-quant.
    IQ3_XXS,
    /// i-quant.
    IQ1_S,
    /// i-quant.
    IQ4_NL,
    /// i-quant.
    IQ3_S,
    /// i-quant.
    IQ2_S,
    /// i-quant.
    IQ4_XS,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 64-bit float.
    F64,
    /// i-quant.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// ternary.
    TQ1_0,
    /// ternary.
    TQ2_0,
    /// microscaling fp4.
    MXFP4,
    /// NVIDIA fp4.
    NVFP4,
    /// 1-bit.
    Q1_0,
}

/// `(type, id, name, values per block, bytes per block)`, from gguf-py `constants.py`
/// (`GGMLQuantizationType`, `GGML_QUANT_SIZES`; QK_K = 256).
const TYPE_TABLE: &[(GgmlType, u32, &str, u64, u64)] = {
    use GgmlType::*;
    &[
        (F32, 0, "F32", 1, 4),
        (F16, 1, "F16", 1, 2),
        (Q4_0, 2, "Q4_0", 32, 18),
        (Q4_1, 3, "Q4_1", 32, 20),
        (Q5_0, 6, "Q5_0", 32, 22),
        (Q5_1, 7, "Q5_1", 32, 24),
        (Q8_0, 8, "Q8_0", 32, 34),
        (Q8_1, 9, "Q8_1", 32, 40),
        (Q2_K, 10, "Q2_K", 256, 84),
        (Q3_K, 11, "Q3_K", 256, 110),
        (Q4_K, 12, "Q4_K", 256, 144),
        (Q5_K, 13, "Q5_K", 256, 176),
        (Q6_K, 14, "Q6_K", 256, 210),
        (Q8_K, 15, "Q8_K", 256, 292),
        (IQ2_XXS, 16, "IQ2_XXS", 256, 66),
        (IQ2_XS, 17, "IQ2_XS", 256, 74),
        (IQ3_XXS, 18, "IQ3_XXS", 256, 98),
        (IQ1_S, 19, "IQ1_S", 256, 50),
        (IQ4_NL, 20, "IQ4_NL", 32, 18),
        (IQ3_S, 21, "IQ3_S", 256, 110),
        (IQ2_S, 22, "IQ2_S", 256, 82),
        (IQ4_XS, 23, "IQ4_XS", 256, 136),
        (I8, 24, "I8", 1, 1),
        (I16, 25, "I16", 1, 2),
        (I32, 26, "I32", 1, 4),
        (I64, 27, "I64", 1, 8),
        (F64, 28, "F64", 1, 8),
        (IQ1_M, 29, "IQ1_M", 256, 56),
        (BF16, 30, "BF16", 1, 2),
        (TQ1_0, 34, "TQ1_0", 256, 54),
        (TQ2_0, 35, "TQ2_0", 256, 66),
        (MXFP4, 39, "MXFP4", 32, 17),
        (NVFP4, 40, "NVFP4", 64, 36),
        (Q1_0, 41, "Q1_0", 128, 18),
    ]
};

impl GgmlType {
    /// The type with this GGUF id, if it is one ggml defines.
    pub fn from_id(id: u32) -> Option<Self> {
        TYPE_TABLE.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    fn entry(self) -> &'static (GgmlType, u32, &'static str, u64, u64) {
        // Every variant has exactly one row in TYPE_TABLE (checked by a unit test).
        TYPE_TABLE
            .iter()
            .find(|e| e.0 == self)
            .unwrap_or(&TYPE_TABLE[0])
    }

    /// The GGUF id.
    pub fn id(self) -> u32 {
        self.entry().1
    }

    /// The name llama.cpp prints (`"Q4_1"`).
    pub fn name(self) -> &'static str {
        self.entry().2
    }

    /// Values per block (1 for plain element types).
    pub fn block_size(self) -> u64 {
        self.entry().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.entry().4
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table_is_complete_and_unique() {
        for (i, a) in TYPE_TABLE.iter().enumerate() {
            assert_eq!(GgmlType::from_id(a.1), Some(a.0));
            assert_eq!(a.0.id(), a.1);
            for b in &TYPE_TABLE[i + 1..] {
                assert!(a.0 != b.0 && a.1 != b.1 && a.2 != b.2);
            }
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(31), None);
    }
}
