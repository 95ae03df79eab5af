//! NF4 (4-bit NormalFloat) base weights for QLoRA, quantized once at load and dequantized on the fly.
//!
//! The layout is QLoRA's: the weight is flattened row-major and cut into blocks of 64 values; each block keeps
//! its absolute maximum and each value becomes the index of the nearest of 16 NF4 code values of
//! `value / absmax`, two indices per byte with the first in the high nibble. Double quantization then stores
//! the absmaxes themselves in 8 bits: their mean is subtracted and the remainder is quantized in blocks of
//! 256 with one f32 scale per block. bitsandbytes uses its non-linear "dynamic" 8-bit map for that second
//! step; we use symmetric linear int8 (round half to even), which is simpler to specify exactly. These
//! tensors only live inside the trainer (exports merge into the original weights), so nothing else has to
//! read them.
//!
//! Quantization runs on the CPU (rayon) straight from the memory-mapped checkpoint, so a full-precision copy
//! of the weight never reaches the GPU; dequantization is a handful of tensor ops on the device.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Values per NF4 block.
pub const BLOCK: usize = 64;
/// Absmaxes per double-quantization block.
pub const ABSMAX_BLOCK: usize = 256;

/// The 16 NF4 code values (quantiles of N(0,1) scaled to [−1, 1], with an exact zero), as QLoRA defines them.
pub const CODE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_1,
    -0.394_917_5,
    -0.284_441_4,
    -0.184_773_4,
    -0.091_050_0,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_2,
    0.440_709_8,
    0.562_617,
    0.722_956_8,
    1.0,
];

/// Decision thresholds between neighbouring codes: the f32 midpoints. A value equal to a midpoint takes the
/// lower code.
fn midpoints() -> [f32; 15] {
    std::array::from_fn(|i| (CODE[i] + CODE[i + 1]) / 2.0)
}

/// Index of the nearest code to `x` in [−1, 1]: how many midpoints lie strictly below it.
#[inline]
fn nearest(x: f32, mid: &[f32; 15]) -> u8 {
    mid.iter().map(|&m| u8::from(x > m)).sum()
}

/// An NF4-quantized matrix, on the CPU or on a device.
pub struct Nf4 {
    /// Original shape ([out, in] for a linear weight).
    pub shape: Vec<i64>,
    /// Two 4-bit code indices per byte, `blocks × 32` bytes (the tail block is zero-padded).
    pub packed: Tensor,
    /// Double-quantized absmax per block: int8 codes, padded with zeros to whole 256-blocks.
    pub absmax_q: Tensor,
    /// One f32 scale per 256 absmaxes.
    pub absmax_scale: Tensor,
    /// The mean subtracted from the absmaxes before their quantization.
    pub absmax_mean: f32,
}

/// The quantized arrays as plain vectors (what [`quantize`] computes; tests compare them with the reference).
#[derive(Clone, Debug, PartialEq)]
pub struct Nf4Parts {
    pub packed: Vec<u8>,
    pub absmax_q: Vec<i8>,
    pub absmax_scale: Vec<f32>,
    pub absmax_mean: f32,
}

/// Quantizes `values` (row-major). Pure and deterministic (the parallel parts are per block).
pub fn quantize(values: &[f32]) -> Nf4Parts {
    let mid = midpoints();
    let blocks = values.len().div_ceil(BLOCK);
    let mut packed = vec![0u8; blocks * BLOCK / 2];
    let mut absmax = vec![0f32; blocks];
    packed
        .par_chunks_mut(BLOCK / 2)
        .zip(absmax.par_iter_mut())
        .enumerate()
        .for_each(|(b, (out, amax))| {
            let start = b * BLOCK;
            let block = &values[start..(start + BLOCK).min(values.len())];
            let m = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            *amax = m;
            let index = |i: usize| -> u8 {
                match block.get(i) {
                    // An all-zero block divides by zero: every value is exactly code 0.0 (index 7).
                    Some(&v) if m > 0.0 => nearest(v / m, &mid),
                    _ => 7,
                }
            };
            for (j, byte) in out.iter_mut().enumerate() {
                *byte = (index(2 * j) << 4) | index(2 * j + 1);
            }
        });
    // The mean in f64 (order-independent enough, and exactly reproducible in numpy), stored as f32.
    let mean = (absmax.iter().map(|&a| f64::from(a)).sum::<f64>() / blocks.max(1) as f64) as f32;
    let groups = blocks.div_ceil(ABSMAX_BLOCK);
    let mut absmax_q = vec![0i8; groups * ABSMAX_BLOCK];
    let mut absmax_scale = vec![0f32; groups];
    absmax_q
        .chunks_mut(ABSMAX_BLOCK)
        .zip(absmax.chunks(ABSMAX_BLOCK))
        .zip(absmax_scale.iter_mut())
        .for_each(|((q, a), scale)| {
            let centered: Vec<f32> = a.iter().map(|&v| v - mean).collect();
            let s = centered.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            *scale = s;
            if s > 0.0 {
                for (q, c) in q.iter_mut().zip(&centered) {
                    *q = (c / s).round_ties_even().clamp(-127.0, 127.0) as i8;
                }
            }
        });
    Nf4Parts {
        packed,
        absmax_q,
        absmax_scale,
        absmax_mean: mean,
    }
}

/// Dequantizes on the CPU, value by value (the reference the tensor path is tested against).
pub fn dequantize_parts(p: &Nf4Parts, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let byte = p.packed[i / 2];
            let idx = if i % 2 == 0 { byte >> 4 } else { byte & 15 };
            let b = i / BLOCK;
            let amax = f32::from(p.absmax_q[b]) * p.absmax_scale[b / ABSMAX_BLOCK] + p.absmax_mean;
            CODE[idx as usize] * amax
        })
        .collect()
}

impl Nf4 {
    /// Quantizes a matrix given as f32 values with `shape`, and moves the result to `device`.
    pub fn from_f32(values: &[f32], shape: &[i64], device: Device) -> Self {
        let p = quantize(values);
        Nf4 {
            shape: shape.to_vec(),
            packed: Tensor::from_slice(&p.packed).to_device(device),
            absmax_q: Tensor::from_slice(&p.absmax_q).to_device(device),
            absmax_scale: Tensor::from_slice(&p.absmax_scale).to_device(device),
            absmax_mean: p.absmax_mean,
        }
    }

    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// Bytes held on the device (for memory reports).
    pub fn bytes(&self) -> i64 {
        (self.packed.numel() + self.absmax_q.numel() + 4 * self.absmax_scale.numel()) as i64
    }

    /// The full-precision matrix in `kind`: code[index] · absmax, computed in f32 then cast.
    pub fn dequantize(&self, kind: Kind) -> Tensor {
        let device = self.packed.device();
        let blocks = self.packed.size()[0] / (BLOCK as i64 / 2);
        // Byte → (high code, low code) through a 256-entry table: one gather instead of shifts and masks.
        let table: Vec<f32> = (0..256usize).flat_map(|b| [CODE[b >> 4], CODE[b & 15]]).collect();
        let table = Tensor::from_slice(&table).view([256, 2]).to_device(device);
        let codes = table
            .index_select(0, &self.packed.to_kind(Kind::Int))
            .view([blocks, BLOCK as i64]);
        let groups = self.absmax_scale.size()[0];
        let absmax = (self.absmax_q.to_kind(Kind::Float).view([groups, ABSMAX_BLOCK as i64])
            * self.absmax_scale.unsqueeze(1)
            + f64::from(self.absmax_mean))
        .view([-1])
        .narrow(0, 0, blocks);
        (codes * absmax.unsqueeze(1))
            .view([-1])
            .narrow(0, 0, self.numel())
            .view(self.shape.as_slice())
            .to_kind(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_code_takes_the_lower_code_at_a_midpoint() {
        let mid = midpoints();
        assert_eq!(nearest(-1.0, &mid), 0);
        assert_eq!(nearest(1.0, &mid), 15);
        assert_eq!(nearest(0.0, &mid), 7);
        assert_eq!(nearest(mid[7], &mid), 7);
        assert_eq!(nearest(f32::from_bits(mid[7].to_bits() + 1), &mid), 8);
        for (i, &c) in CODE.iter().enumerate() {
            assert_eq!(nearest(c, &mid) as usize, i, "code {c} maps to itself");
        }
    }

    #[test]
    fn packing_puts_the_first_value_in_the_high_nibble() {
        let mut v = vec![0f32; 64];
        v[0] = -1.0;
        v[1] = 1.0;
        let p = quantize(&v);
        assert_eq!(p.packed[0], 0x0F);
        assert_eq!(p.packed[1], 0x77);
        assert_eq!(p.packed.len(), 32);
        // One block: the absmax is the mean, so the int8 remainder is 0 and the scale 0.
        assert_eq!((p.absmax_mean, p.absmax_scale[0], p.absmax_q[0]), (1.0, 0.0, 0));
    }

    #[test]
    fn round_trip_error_is_bounded_by_the_code_spacing() {
        // Values with widely varying block scales, and a partial last block.
        let n = 64 * 300 + 17;
        let values: Vec<f32> = (0..n)
            .map(|i| {
                let x = ((i as f32) * 0.618_034).fract() * 2.0 - 1.0;
                x * (1.0 + (i / 64 % 7) as f32)
            })
            .collect();
        let p = quantize(&values);
        assert_eq!(p.packed.len(), 301 * 32);
        assert_eq!(p.absmax_q.len(), 512);
        let back = dequantize_parts(&p, n);
        let widest_gap = CODE.windows(2).map(|w| w[1] - w[0]).fold(0f32, f32::max);
        for (b, (orig, deq)) in values.chunks(64).zip(back.chunks(64)).enumerate() {
            let amax = orig.iter().fold(0f32, |m, v| m.max(v.abs()));
            // Half the widest code gap, plus the absmax's own int8 error (≤ half a step of its scale).
            let bound = amax * widest_gap / 2.0 + p.absmax_scale[b / 256] / 2.0 + 1e-6;
            for (o, d) in orig.iter().zip(deq) {
                assert!((o - d).abs() <= bound, "block {b}: {o} → {d} (bound {bound})");
            }
        }
    }

    #[test]
    fn tensor_dequantization_equals_the_scalar_one() {
        let values: Vec<f32> = (0..(128 * 70))
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        let q = Nf4::from_f32(&values, &[128, 70], Device::Cpu);
        let got: Vec<f32> = Vec::try_from(q.dequantize(Kind::Float).view([-1])).unwrap();
        assert_eq!(got, dequantize_parts(&quantize(&values), values.len()));
    }
}
