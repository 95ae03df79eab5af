//! Tensor types and the per-type row kernels, in one table so reader, writer and quantizer agree.

use super::quants as q;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    BF16,
}

/// Quantizes one row of f32 values into its blocks' bytes.
pub type RowQuantizer = fn(&[f32], &mut [u8]);

impl GgmlType {
    pub const ALL: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::BF16,
    ];

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::BF16 => 30,
        }
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::BF16 => "BF16",
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => q::QK,
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => q::QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }

    /// Bytes of a row of `n` values, None when `n` is not a whole number of blocks or overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.type_size() as u64)
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// The row quantizer; None for the types we only read.
    pub fn quantizer(self) -> Option<RowQuantizer> {
        Some(match self {
            GgmlType::F32 => q::quantize_row_f32,
            GgmlType::F16 => q::quantize_row_f16,
            GgmlType::BF16 => q::quantize_row_bf16,
            GgmlType::Q8_0 => q::quantize_row_q8_0,
            GgmlType::Q5_0 => q::quantize_row_q5_0,
            GgmlType::Q5_1 => q::quantize_row_q5_1,
            GgmlType::Q4K => q::quantize_row_q4_k,
            GgmlType::Q5K => q::quantize_row_q5_k,
            GgmlType::Q6K => q::quantize_row_q6_k,
            GgmlType::Q4_0 | GgmlType::Q4_1 => return None,
        })
    }

    pub fn dequantizer(self) -> fn(&[u8], &mut [f32]) {
        match self {
            GgmlType::F32 => q::dequantize_row_f32,
            GgmlType::F16 => q::dequantize_row_f16,
            GgmlType::BF16 => q::dequantize_row_bf16,
            GgmlType::Q4_0 => q::dequantize_row_q4_0,
            GgmlType::Q4_1 => q::dequantize_row_q4_1,
            GgmlType::Q8_0 => q::dequantize_row_q8_0,
            GgmlType::Q5_0 => q::dequantize_row_q5_0,
            GgmlType::Q5_1 => q::dequantize_row_q5_1,
            GgmlType::Q4K => q::dequantize_row_q4_k,
            GgmlType::Q5K => q::dequantize_row_q5_k,
            GgmlType::Q6K => q::dequantize_row_q6_k,
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
