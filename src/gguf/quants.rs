//! Quantization kernels as pure functions on rows, bit-for-bit the reference path of llama.cpp's
//! `ggml-quants.c` (no importance matrix). Every float operation keeps the C operand order and uses a
//! separate multiply and add: llama.cpp builds this file without FMA contraction, and a fused
//! multiply-add rounds once instead of twice, which flips quantized values on ties.

use half::{bf16, f16};

/// Values per super-block of the K-quants.
pub const QK_K: usize = 256;
/// Values per block of the legacy 32-value types.
pub const QK: usize = 32;
const GROUP_MAX_EPS: f32 = 1e-15;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BlockQ8_0 {
    pub d: u16,
    pub qs: [i8; 32],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BlockQ4_0 {
    pub d: u16,
    pub qs: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BlockQ4_1 {
    pub d: u16,
    pub m: u16,
    pub qs: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BlockQ5_0 {
    pub d: u16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BlockQ5_1 {
    pub d: u16,
    pub m: u16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: u16,
}

// The on-disk block sizes; a layout change here would silently corrupt every file.
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl BlockQ8_0 {
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        for (o, q) in out[2..34].iter_mut().zip(self.qs) {
            *o = q as u8;
        }
    }
}

impl BlockQ5_0 {
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        out[2..6].copy_from_slice(&self.qh);
        out[6..22].copy_from_slice(&self.qs);
    }
}

impl BlockQ5_1 {
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.m);
        out[4..8].copy_from_slice(&self.qh);
        out[8..24].copy_from_slice(&self.qs);
    }
}

impl BlockQ4K {
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.dmin);
        out[4..16].copy_from_slice(&self.scales);
        out[16..144].copy_from_slice(&self.qs);
    }
}

impl BlockQ5K {
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.dmin);
        out[4..16].copy_from_slice(&self.scales);
        out[16..48].copy_from_slice(&self.qh);
        out[48..176].copy_from_slice(&self.qs);
    }
}

impl BlockQ6K {
    fn write(&self, out: &mut [u8]) {
        out[0..128].copy_from_slice(&self.ql);
        out[128..192].copy_from_slice(&self.qh);
        for (o, s) in out[192..208].iter_mut().zip(self.scales) {
            *o = s as u8;
        }
        put_u16(out, 208, self.d);
    }
}

/// A public kernel that runs its AVX2 twin (module `avx2`, same name) where the CPU has the listed features,
/// detected at run time, and the scalar one elsewhere.
macro_rules! dispatch {
    ($name:ident, $scalar:ident, $($feature:tt),+) => {
        pub fn $name(x: &[f32], out: &mut [u8]) {
            #[cfg(target_arch = "x86_64")]
            if $(std::arch::is_x86_feature_detected!($feature))&&+ {
                // SAFETY: the target features the twin is compiled for were detected at run time.
                unsafe { avx2::$name(x, out) };
                return;
            }
            $scalar(x, out);
        }
    };
}

/// IEEE binary16 with round-to-nearest-even, NaN mapped to the quiet NaN ggml writes.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    if x.is_nan() { 0x7E00 } else { f16::from_f32(x).to_bits() }
}

#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// bfloat16 rounding as ggml (and the converter) do it: to nearest even, NaN kept quiet.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    bf16::from_bits(h).to_f32()
}

/// A C cast from float to integer as x86 compiles it (`cvttss2si`/`cvttps2dq`): truncation toward zero, and
/// the "integer indefinite" value `i32::MIN` for NaN and anything out of range, of which a narrowing C cast then
/// keeps the low byte (0). Rust's `as` saturates instead (infinity → `i32::MAX`), which differs from llama.cpp
/// exactly when a block's `1/d` overflows to infinity (spreads near 1e-38).
#[inline]
fn trunc_x86(x: f32) -> i32 {
    if x.abs() < 2_147_483_648.0 { x as i32 } else { i32::MIN }
}

/// `roundf` (halves away from zero) followed by a C cast, exactly, for the |x| <= 128 the Q8_0 kernel rounds:
/// truncation to i32 is one SSE2 instruction that vectorizes, where `f32::round` is a libm call on baseline
/// x86-64; `x - trunc(x)` is exact below 2^23, so the half test is too. Beyond the i32 range (a block whose
/// `1/d` overflowed) the result is the cast's `i32::MIN`, as in C.
#[inline]
fn round_half_away(x: f32) -> i32 {
    if x.is_nan() || x.abs() >= 2_147_483_648.0 {
        return i32::MIN;
    }
    let t = x as i32;
    let frac = x - t as f32;
    t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)
}

/// Round half to even by the 1.5·2^23 trick (exact for |x| < 2^22, and deterministic garbage beyond,
/// which is what llama.cpp computes too).
#[inline]
fn nearest_int(f: f32) -> i32 {
    let val = f + 12_582_912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

dispatch!(quantize_row_f16, quantize_row_f16_scalar, "avx2", "f16c");

fn quantize_row_f16_scalar(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
    }
}

dispatch!(quantize_row_bf16, quantize_row_bf16_scalar, "avx2");

fn quantize_row_bf16_scalar(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
    }
}

pub fn quantize_row_f32(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

dispatch!(quantize_row_q8_0, quantize_row_q8_0_scalar, "avx2");

fn quantize_row_q8_0_scalar(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
        let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ8_0 {
            d: f32_to_f16(d),
            ..Default::default()
        };
        for (q, v) in b.qs.iter_mut().zip(xb) {
            *q = round_half_away(v * id) as i8;
        }
        b.write(ob);
    }
}

/// The value of largest magnitude (the first one on ties), as the 32-value symmetric types pick it.
fn signed_absmax(xb: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in xb {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(xb: &[f32]) -> (f32, f32) {
    // llama.cpp scans with strict comparisons, so NaN never wins and, among equal values, the first one does.
    // Only 0.0 and -0.0 compare equal with different bits, so: eight independent lanes (which vectorize),
    // lanes combined, then a zero result replaced by the first zero in order. Same bits, several times faster.
    let (mut mins, mut maxs) = ([f32::MAX; 8], [-f32::MAX; 8]);
    let chunks = xb.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            if c[k] < mins[k] {
                mins[k] = c[k];
            }
            if c[k] > maxs[k] {
                maxs[k] = c[k];
            }
        }
    }
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in mins.iter().chain(rest) {
        if v < min {
            min = v;
        }
    }
    for &v in maxs.iter().chain(rest) {
        if v > max {
            max = v;
        }
    }
    if min == 0.0 {
        min = xb.iter().copied().find(|&v| v == 0.0).unwrap_or(min);
    }
    if max == 0.0 {
        max = xb.iter().copied().find(|&v| v == 0.0).unwrap_or(max);
    }
    (min, max)
}

dispatch!(quantize_row_q5_0, quantize_row_q5_0_scalar, "avx2");

fn quantize_row_q5_0_scalar(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(22)) {
        let d = signed_absmax(xb) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ5_0 {
            d: f32_to_f16(d),
            ..Default::default()
        };
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let x0 = xb[j] * id;
            let x1 = xb[j + QK / 2] * id;
            // C: `MIN(31, (int8_t)(x0 + 16.5f))`, a signed minimum of the cast's low byte.
            let xi0 = (trunc_x86(x0 + 16.5) as i8).min(31) as u8;
            let xi1 = (trunc_x86(x1 + 16.5) as i8).min(31) as u8;
            b.qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        b.qh = qh.to_le_bytes();
        b.write(ob);
    }
}

dispatch!(quantize_row_q5_1, quantize_row_q5_1_scalar, "avx2");

fn quantize_row_q5_1_scalar(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(24)) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ5_1 {
            d: f32_to_f16(d),
            m: f32_to_f16(min),
            ..Default::default()
        };
        // Levels first (independent per value, so vectorized), then the nibble and high-bit packing.
        // Through i32 (one SSE2 instruction) rather than u32: the values are within [0, 31.5] unless 1/d overflowed.
        let xi: [u32; QK] = std::array::from_fn(|j| trunc_x86((xb[j] - min) * id + 0.5) as u32);
        b.qs = std::array::from_fn(|j| ((xi[j] & 0x0f) | ((xi[j + QK / 2] & 0x0f) << 4)) as u8);
        // Value j's fifth bit goes to bit j of qh (the first half's to bits 0-15, the second's to 16-31).
        b.qh = fifth_bits(&xi).to_le_bytes();
        b.write(ob);
    }
}

/// Kernels eight values per instruction, chosen at run time. llama.cpp's reference loops are auto-vectorized
/// for AVX2 when ggml is built for the CPU, and our baseline (SSE2) builds, four lanes wide or scalar, fell
/// short of them. The float operations are the scalar kernels', one by one (no FMA, same order), and the
/// integer conversions are x86's truncating ones that C's casts compile to, so the bytes are the same: `tests`
/// checks each path against its scalar twin and `tests/gguf_kernels.rs` against ggml.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{QK, f32_to_f16};
    use std::arch::x86_64::*;

    /// Round to nearest even on the upper half, NaN kept quiet (`f32_to_bf16`), eight at a time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_row_bf16(x: &[f32], out: &mut [u8]) {
        let whole = x.len() / 8 * 8;
        for (xc, oc) in x[..whole].chunks_exact(8).zip(out.chunks_exact_mut(16)) {
            // SAFETY: `xc` is eight floats and `oc` sixteen bytes, both accessed unaligned.
            unsafe {
                let u = _mm256_loadu_si256(xc.as_ptr().cast());
                let hi = _mm256_srli_epi32::<16>(u);
                let lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
                let rounded =
                    _mm256_srli_epi32::<16>(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)));
                // |u| > infinity's bits: NaN. Both sides are below 2^31, so the signed compare is exact.
                let abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fff_ffff));
                let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
                let quiet = _mm256_or_si256(hi, _mm256_set1_epi32(64));
                let r = _mm256_blendv_epi8(rounded, quiet, nan);
                // Every lane is below 2^16, so the saturating pack is a plain narrowing; it interleaves
                // 128-bit lanes, and the permute brings values 0-3 and 4-7 together.
                let p = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packus_epi32(r, r));
                _mm_storeu_si128(oc.as_mut_ptr().cast(), _mm256_castsi256_si128(p));
            }
        }
        super::quantize_row_bf16_scalar(&x[whole..], &mut out[2 * whole..]);
    }

    /// F16 by the F16C instruction (round to nearest even, as `f32_to_f16`); NaN lanes, which the instruction
    /// would keep with their payload, are written as the one quiet NaN ggml writes.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn quantize_row_f16(x: &[f32], out: &mut [u8]) {
        let whole = x.len() / 8 * 8;
        for (xc, oc) in x[..whole].chunks_exact(8).zip(out.chunks_exact_mut(16)) {
            // SAFETY: `xc` is eight floats and `oc` sixteen bytes, both accessed unaligned.
            unsafe {
                let v = _mm256_loadu_ps(xc.as_ptr());
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                let ordered = _mm256_cmp_ps::<_CMP_ORD_Q>(v, v);
                let h = if _mm256_movemask_ps(ordered) == 0xff {
                    h
                } else {
                    // 32-bit lane masks narrowed to 16-bit ones (-1 and 0 survive the signed pack).
                    let keep = _mm_packs_epi32(
                        _mm_castps_si128(_mm256_castps256_ps128(ordered)),
                        _mm_castps_si128(_mm256_extractf128_ps::<1>(ordered)),
                    );
                    _mm_blendv_epi8(_mm_set1_epi16(0x7E00), h, keep)
                };
                _mm_storeu_si128(oc.as_mut_ptr().cast(), h);
            }
        }
        super::quantize_row_f16_scalar(&x[whole..], &mut out[2 * whole..]);
    }

    /// Q8_0: d = amax / 127, values rounded half away from zero (`round_half_away`), kept as the low byte.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_row_q8_0(x: &[f32], out: &mut [u8]) {
        let sign = _mm256_set1_ps(-0.0);
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
            let v = load_block(xb);
            // NaN is skipped, as Rust's `f32::max` in the scalar kernel skips it.
            let d = abs_max(&v) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let vid = _mm256_set1_ps(id);
            let (half, neg_half) = (_mm256_set1_ps(0.5), _mm256_set1_ps(-0.5));
            let limit = _mm256_set1_ps(2_147_483_648.0);
            let q = v.map(|vk| {
                let y = _mm256_mul_ps(vk, vid);
                let t = _mm256_cvttps_epi32(y);
                let frac = _mm256_sub_ps(y, _mm256_cvtepi32_ps(t));
                // Comparison masks are -1 where true: subtracting the "up" mask adds one.
                let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half));
                let down = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(frac, neg_half));
                let r = _mm256_add_epi32(_mm256_sub_epi32(t, up), down);
                // Out of the i32 range (or NaN) C's cast gives i32::MIN, whose low byte is 0.
                let inside = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_andnot_ps(sign, y), limit));
                _mm256_and_si256(_mm256_and_si256(r, inside), _mm256_set1_epi32(0xff))
            });
            // Low bytes, in order: two unsigned packs (exact, every lane is 0..=255), which interleave 128-bit
            // lanes in groups of four values, then a permute of those groups.
            let w0 = _mm256_packus_epi32(q[0], q[1]);
            let w1 = _mm256_packus_epi32(q[2], q[3]);
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w0, w1), order);
            ob[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            // SAFETY: `ob` is 34 bytes; bytes 2..34 take the 32 quants.
            unsafe { _mm256_storeu_si256(ob.as_mut_ptr().add(2).cast(), bytes) };
        }
    }

    /// Q5_0: the value of largest magnitude (the first on ties) sets d = max / -16.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_row_q5_0(x: &[f32], out: &mut [u8]) {
        let sign = _mm256_set1_ps(-0.0);
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(22)) {
            let v = load_block(xb);
            // NaN is skipped, as the C loop's `amax < fabsf(v)` never takes one.
            let amax = abs_max(&v);
            // C keeps the first value whose magnitude is amax (later equal ones do not compare greater); an
            // all-zero block keeps its initial +0.0.
            let max = if amax > 0.0 {
                let want = _mm256_set1_ps(amax);
                let hits = v.iter().enumerate().fold(0u32, |m, (k, &vk)| {
                    let eq = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_andnot_ps(sign, vk), want);
                    m | ((_mm256_movemask_ps(eq) as u32) << (8 * k))
                });
                xb[hits.trailing_zeros() as usize]
            } else {
                0.0
            };
            let d = max / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let (vid, bias) = (_mm256_set1_ps(id), _mm256_set1_ps(16.5));
            // C: `MIN(31, (int8_t)(x * id + 16.5f))`: the truncated integer's low byte, sign-extended, then a
            // signed minimum.
            let xi = v.map(|vk| {
                let t = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(vk, vid), bias));
                let byte = _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(t));
                _mm256_min_epi32(byte, _mm256_set1_epi32(31))
            });
            let (qs, qh) = pack_nibbles_and_fifth_bits(&xi);
            ob[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            ob[2..6].copy_from_slice(&qh.to_le_bytes());
            // SAFETY: `ob` is 22 bytes; bytes 6..22 take the 16 packed nibble pairs.
            unsafe { _mm_storeu_si128(ob.as_mut_ptr().add(6).cast(), qs) };
        }
    }

    /// Value j's low nibble and value j+16's (shifted up) share byte j of qs; bit 4 of value j goes to bit j
    /// of qh. `xi` holds the 32 levels as four vectors of eight.
    #[target_feature(enable = "avx2")]
    fn pack_nibbles_and_fifth_bits(xi: &[__m256i; 4]) -> (__m128i, u32) {
        let nib = _mm256_set1_epi32(0x0f);
        let pair = |a: __m256i, b: __m256i| {
            _mm256_or_si256(
                _mm256_and_si256(a, nib),
                _mm256_slli_epi32::<4>(_mm256_and_si256(b, nib)),
            )
        };
        let (c0, c1) = (pair(xi[0], xi[2]), pair(xi[1], xi[3]));
        // packus interleaves 128-bit lanes ([c0 0-3, c1 0-3, c0 4-7, c1 4-7]); the permute restores order.
        let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(c0, c1));
        let qs = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256::<1>(words));
        // Bit 4 of each level, moved to the sign bit and gathered eight at a time.
        let qh = xi.iter().enumerate().fold(0u32, |acc, (k, &l)| {
            let m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32::<27>(l))) as u32;
            acc | (m << (8 * k))
        });
        (qs, qh)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_row_q5_1(x: &[f32], out: &mut [u8]) {
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(24)) {
            let v = load_block(xb);
            // `_mm256_min_ps(x, acc)` is `x < acc ? x : acc`, the C loop's comparison, so a NaN never replaces
            // the running value; the lanes start where the C loop starts (±FLT_MAX).
            let (mut lo, mut hi) = (_mm256_set1_ps(f32::MAX), _mm256_set1_ps(-f32::MAX));
            for &vk in &v {
                lo = _mm256_min_ps(vk, lo);
                hi = _mm256_max_ps(vk, hi);
            }
            let (mut min, mut max) = (hmin(lo), hmax(hi));
            // 0.0 and -0.0 are the only equal values with different bits: the C loop keeps the first zero.
            if min == 0.0 {
                min = xb.iter().copied().find(|&v| v == 0.0).unwrap_or(min);
            }
            if max == 0.0 {
                max = xb.iter().copied().find(|&v| v == 0.0).unwrap_or(max);
            }
            let d = (max - min) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let (vmin, vid, half) = (_mm256_set1_ps(min), _mm256_set1_ps(id), _mm256_set1_ps(0.5));
            let xi = v.map(|vk| _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(vk, vmin), vid), half)));
            let (qs, qh) = pack_nibbles_and_fifth_bits(&xi);
            ob[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            ob[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
            ob[4..8].copy_from_slice(&qh.to_le_bytes());
            // SAFETY: `ob` is 24 bytes; bytes 8..24 take the 16 packed nibble pairs.
            unsafe { _mm_storeu_si128(ob.as_mut_ptr().add(8).cast(), qs) };
        }
    }

    /// A 32-value block as four vectors of eight.
    #[target_feature(enable = "avx2")]
    fn load_block(xb: &[f32]) -> [__m256; 4] {
        let xb = &xb[..QK];
        // SAFETY: `xb` holds 32 floats, read as four unaligned vectors of eight.
        unsafe { [0, 8, 16, 24].map(|k| _mm256_loadu_ps(xb.as_ptr().add(k))) }
    }

    /// The largest magnitude in a block (0.0 for none): `max(|x|, acc)` keeps acc when x is NaN.
    #[target_feature(enable = "avx2")]
    fn abs_max(v: &[__m256; 4]) -> f32 {
        let sign = _mm256_set1_ps(-0.0);
        let mut acc = _mm256_setzero_ps();
        for &vk in v {
            acc = _mm256_max_ps(_mm256_andnot_ps(sign, vk), acc);
        }
        hmax(acc)
    }

    /// Smallest lane; only called on lanes free of NaN (see above), where the order of reduction is immaterial.
    #[target_feature(enable = "avx2")]
    fn hmin(v: __m256) -> f32 {
        let m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_min_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps::<0b01>(m, m)))
    }

    #[target_feature(enable = "avx2")]
    fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m)))
    }
}

/// Bit 4 of each of 32 levels, gathered into one word (level `k` to bit `k`). A serial shift-and-or loop was
/// the slowest part of Q5_1; on x86-64 a sign-bit movemask gathers four levels per instruction (SSE2 is part of
/// the x86-64 baseline, so this needs no runtime detection).
fn fifth_bits(xi: &[u32; 32]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_castsi128_ps, _mm_loadu_si128, _mm_movemask_ps, _mm_slli_epi32};
        let mut qh = 0u32;
        for (g, chunk) in xi.chunks_exact(4).enumerate() {
            // SAFETY: `chunk` is exactly four u32 (16 bytes), read unaligned; SSE2 is always present on x86-64.
            let mask = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                _mm_movemask_ps(_mm_castsi128_ps(_mm_slli_epi32::<27>(v)))
            };
            qh |= (mask as u32) << (4 * g);
        }
        qh
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        xi.iter()
            .enumerate()
            .fold(0u32, |qh, (k, &l)| qh | (((l >> 4) & 1) << k))
    }
}

/// Weighted search for scale and min of one 32-value sub-block (llama.cpp's `make_qkx2_quants` without MAD).
/// Returns (scale, -min); `l` receives the chosen levels.
///
/// Bytes must equal llama.cpp's, so every float sum runs in the same sequential order as its C loop; what is
/// independent per element (the rounding to levels) is done in a separate loop over fixed-size arrays, which the
/// compiler vectorizes.
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32; 32],
    weights: &[f32; 32],
    l: &mut [u8; 32],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..32 {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let levels = |iscale: f32, min: f32| -> [f32; 32] {
        std::array::from_fn(|i| nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as f32)
    };
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = levels(iscale, min);
    let mut best_error = 0.0f32;
    for i in 0..32 {
        let diff = scale * best[i] + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let laux = levels(iscale, min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..32 {
            let (w, lf) = (weights[i], laux[i]);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..32 {
                let diff = this_scale * laux[i] + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                best = laux;
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    for (o, v) in l.iter_mut().zip(best) {
        *o = v as u8;
    }
    (scale, -min)
}

fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Shared front half of Q4_K and Q5_K: per-sub-block scale/min search, 6-bit packing, final levels.
fn kquant_levels(x: &[f32], nmax: i32, rmin: f32, nstep: i32, l: &mut [u8; QK_K]) -> (u16, u16, [u8; 12]) {
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut weights = [0.0f32; 32];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let xs: &[f32; 32] = xs.try_into().expect("sub-blocks hold 32 values");
        let lj: &mut [u8; 32] = (&mut l[32 * j..32 * j + 32])
            .try_into()
            .expect("sub-blocks hold 32 levels");
        let (s, m) = make_qkx2_quants(nmax, xs, &weights, lj, rmin, 0.1, nstep);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..QK_K / 32 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f32_to_f16(max_scale / 63.0);
    let dmin = f32_to_f16(max_min / 63.0);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = f16_to_f32(d) * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = f16_to_f32(dmin) * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed)
}

pub fn quantize_row_q4_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(144)) {
        let (d, dmin, scales) = kquant_levels(xb, 15, -1.0, 20, &mut l);
        let mut b = BlockQ4K {
            d,
            dmin,
            scales,
            qs: [0; 128],
        };
        for (c, j) in (0..QK_K).step_by(64).enumerate() {
            for i in 0..32 {
                b.qs[32 * c + i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
        b.write(ob);
    }
}

pub fn quantize_row_q5_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; QK_K];
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(176)) {
        let (d, dmin, scales) = kquant_levels(xb, 31, -0.5, 15, &mut l);
        let mut b = BlockQ5K {
            d,
            dmin,
            scales,
            qh: [0; 32],
            qs: [0; 128],
        };
        let (mut m1, mut m2) = (1u8, 2u8);
        for (c, n) in (0..QK_K).step_by(64).enumerate() {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    b.qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    b.qh[j] |= m2;
                }
                b.qs[32 * c + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        b.write(ob);
    }
}

/// llama.cpp's `make_qx_quants` with rmse_type 1 and no importance weights (weights x²).
///
/// The C code tries 19 scales one after another, each with two running sums over the 16 values: 19 × 16
/// dependent float additions per chain, which bound its speed by the adder's latency. The trials do not depend
/// on each other, so here each is a lane: the sums of all trials advance together, value by value, every chain
/// still adding in the C loop's order (identical bits), and the trial that wins is picked afterwards with the
/// C loop's comparisons in its order.
fn make_qx_quants16(x: &[f32], l: &mut [i8]) -> f32 {
    const NMAX: i32 = 32;
    /// Lane k is the trial `is = k - 9`; lane 9 (is = 0) is the C code's first pass. 19 trials, padded to
    /// whole vectors.
    const LANES: usize = 24;
    const TRIALS: usize = 19;
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    // -(nmax + 0.1·is) / max, as C computes it; for is = 0 this is exactly the first pass's -nmax / max.
    let iscales: [f32; LANES] = std::array::from_fn(|k| {
        let is = k.min(TRIALS - 1) as i32 - 9;
        -(NMAX as f32 + 0.1 * is as f32) / max
    });
    let (mut sumlx, mut suml2) = ([0.0f32; LANES], [0.0f32; LANES]);
    for &v in x {
        let w = v * v;
        let wv = w * v;
        for k in 0..LANES {
            let q = nearest_int(iscales[k] * v).clamp(-NMAX, NMAX - 1) as f32;
            sumlx[k] += wv * q;
            suml2[k] += w * q * q;
        }
    }
    const FIRST: usize = 9;
    let mut scale = if suml2[FIRST] != 0.0 {
        sumlx[FIRST] / suml2[FIRST]
    } else {
        0.0
    };
    let mut best = scale * sumlx[FIRST];
    let mut chosen = FIRST;
    for k in (0..TRIALS).filter(|&k| k != FIRST) {
        if suml2[k] > 0.0 && sumlx[k] * sumlx[k] > best * suml2[k] {
            scale = sumlx[k] / suml2[k];
            best = scale * sumlx[k];
            chosen = k;
        }
    }
    for (o, &v) in l.iter_mut().zip(x) {
        *o = (NMAX + nearest_int(iscales[chosen] * v).clamp(-NMAX, NMAX - 1)) as i8;
    }
    scale
}

pub fn quantize_row_q6_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(210)) {
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..QK_K / 16 {
            let s = make_qx_quants16(&xb[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        let mut b = BlockQ6K {
            ql: [0; 128],
            qh: [0; 64],
            scales: [0; 16],
            d: 0,
        };
        if max_abs_scale < GROUP_MAX_EPS {
            b.d = f32_to_f16(0.0);
            b.write(ob);
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = f32_to_f16(1.0 / iscale);
        for (out, &scale) in b.scales.iter_mut().zip(&scales) {
            *out = nearest_int(iscale * scale).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = f16_to_f32(b.d) * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xb[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        let lu = |i: usize| l[i] as u8;
        for (c, j) in (0..QK_K).step_by(128).enumerate() {
            let (ql, qh) = (&mut b.ql[64 * c..64 * c + 64], &mut b.qh[32 * c..32 * c + 32]);
            for i in 0..32 {
                let q1 = lu(j + i) & 0xf;
                let q2 = lu(j + i + 32) & 0xf;
                let q3 = lu(j + i + 64) & 0xf;
                let q4 = lu(j + i + 96) & 0xf;
                ql[i] = q1 | (q3 << 4);
                ql[i + 32] = q2 | (q4 << 4);
                qh[i] = (lu(j + i) >> 4)
                    | ((lu(j + i + 32) >> 4) << 2)
                    | ((lu(j + i + 64) >> 4) << 4)
                    | ((lu(j + i + 96) >> 4) << 6);
            }
        }
        b.write(ob);
    }
}

// ---------------------------------------------------------------- dequantization

pub fn dequantize_row_q8_0(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(34).zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(get_u16(blk, 0));
        for (o, q) in ys.iter_mut().zip(&blk[2..34]) {
            *o = *q as i8 as f32 * d;
        }
    }
}

pub fn dequantize_row_q4_0(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(18).zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(get_u16(blk, 0));
        for j in 0..16 {
            ys[j] = ((blk[2 + j] & 0xf) as i32 - 8) as f32 * d;
            ys[j + 16] = ((blk[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_row_q4_1(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(20).zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(get_u16(blk, 0));
        let m = f16_to_f32(get_u16(blk, 2));
        for j in 0..16 {
            ys[j] = (blk[4 + j] & 0xf) as f32 * d + m;
            ys[j + 16] = (blk[4 + j] >> 4) as f32 * d + m;
        }
    }
}

fn q5_bits(qh: u32, qs: &[u8], j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (((qs[j] & 0xf) as u32 | h0) as i32, ((qs[j] >> 4) as u32 | h1) as i32)
}

pub fn dequantize_row_q5_0(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(22).zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(get_u16(blk, 0));
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        for j in 0..16 {
            let (a, c) = q5_bits(qh, &blk[6..22], j);
            ys[j] = (a - 16) as f32 * d;
            ys[j + 16] = (c - 16) as f32 * d;
        }
    }
}

pub fn dequantize_row_q5_1(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(24).zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(get_u16(blk, 0));
        let m = f16_to_f32(get_u16(blk, 2));
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        for j in 0..16 {
            let (a, c) = q5_bits(qh, &blk[8..24], j);
            ys[j] = a as f32 * d + m;
            ys[j + 16] = c as f32 * d + m;
        }
    }
}

pub fn dequantize_row_q4_k(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(144).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(get_u16(blk, 0));
        let min = f16_to_f32(get_u16(blk, 2));
        let scales: [u8; 12] = blk[4..16].try_into().unwrap_or([0; 12]);
        let qs = &blk[16..144];
        for c in 0..4 {
            let (s1, m1) = get_scale_min_k4(2 * c, &scales);
            let (s2, m2) = get_scale_min_k4(2 * c + 1, &scales);
            let (d1, m1) = (d * s1 as f32, min * m1 as f32);
            let (d2, m2) = (d * s2 as f32, min * m2 as f32);
            for l in 0..32 {
                ys[64 * c + l] = d1 * (qs[32 * c + l] & 0xf) as f32 - m1;
                ys[64 * c + 32 + l] = d2 * (qs[32 * c + l] >> 4) as f32 - m2;
            }
        }
    }
}

pub fn dequantize_row_q5_k(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(176).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(get_u16(blk, 0));
        let min = f16_to_f32(get_u16(blk, 2));
        let scales: [u8; 12] = blk[4..16].try_into().unwrap_or([0; 12]);
        let qh = &blk[16..48];
        let qs = &blk[48..176];
        let (mut u1, mut u2) = (1u8, 2u8);
        for c in 0..4 {
            let (s1, m1) = get_scale_min_k4(2 * c, &scales);
            let (s2, m2) = get_scale_min_k4(2 * c + 1, &scales);
            let (d1, m1) = (d * s1 as f32, min * m1 as f32);
            let (d2, m2) = (d * s2 as f32, min * m2 as f32);
            for l in 0..32 {
                let lo = (qs[32 * c + l] & 0xf) + if qh[l] & u1 != 0 { 16 } else { 0 };
                let hi = (qs[32 * c + l] >> 4) + if qh[l] & u2 != 0 { 16 } else { 0 };
                ys[64 * c + l] = d1 * lo as f32 - m1;
                ys[64 * c + 32 + l] = d2 * hi as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

pub fn dequantize_row_q6_k(b: &[u8], y: &mut [f32]) {
    for (blk, ys) in b.chunks_exact(210).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(get_u16(blk, 208));
        for c in 0..2 {
            let ql = &blk[64 * c..64 * c + 64];
            let qh = &blk[128 + 32 * c..128 + 32 * c + 32];
            let sc = &blk[192 + 8 * c..192 + 8 * c + 8];
            let yc = &mut ys[128 * c..128 * c + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | (qh[l] & 3) << 4) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) as i32 - 32;
                let q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i32 - 32;
                yc[l] = d * sc[is] as i8 as f32 * q1 as f32;
                yc[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
                yc[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
                yc[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
            }
        }
    }
}

pub fn dequantize_row_f16(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

pub fn dequantize_row_bf16(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(2)) {
        *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

pub fn dequantize_row_f32(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fifth_bits_gathers_bit_four_of_every_level_in_order() {
        // Levels 0..=31 in a scrambled order: each bit of the result must come from its own level.
        let xi: [u32; 32] = std::array::from_fn(|k| ((k * 7 + 3) % 32) as u32);
        let want = xi
            .iter()
            .enumerate()
            .fold(0u32, |qh, (k, &l)| qh | (((l >> 4) & 1) << k));
        assert_eq!(super::fifth_bits(&xi), want);
        assert_eq!(super::fifth_bits(&[31; 32]), u32::MAX);
        assert_eq!(super::fifth_bits(&[15; 32]), 0);
    }

    /// The AVX2 paths against the scalar ones, byte for byte, on the cases where they could part: signed
    /// zeros in either order, ties in magnitude, NaN, infinities, a spread too small for 1/d, huge and tiny
    /// values, exact halves.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_match_scalar() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let specials = [
            0.0,
            -0.0,
            f32::NAN,
            f32::from_bits(0xffc0_0001),
            f32::from_bits(0x7f80_0001),
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-45,
            -1e-45,
            f32::MAX,
            -f32::MAX,
            0.5,
            1.5,
        ];
        let mut x = Vec::new();
        for block in 0..4096 {
            for j in 0..32 {
                let v = match block % 8 {
                    0 => specials[(block / 8 + j * 3) % specials.len()],
                    1 => {
                        if j % 2 == 0 {
                            0.0
                        } else {
                            -0.0
                        }
                    }
                    2 => {
                        if j % 2 == 0 {
                            -0.0
                        } else {
                            0.0
                        }
                    }
                    3 => (j as f32 - 16.0) * 0.5,
                    4 => rand() * 1e30,
                    5 => rand() * 1e-38,
                    6 => 1e-45 * (j % 3) as f32,
                    // Equal magnitudes of both signs: the first must win.
                    7 if block % 16 == 7 => {
                        if j % 3 == 0 {
                            -2.0
                        } else {
                            2.0
                        }
                    }
                    _ => rand(),
                };
                x.push(v);
            }
        }
        type Kernel = unsafe fn(&[f32], &mut [u8]);
        type Scalar = fn(&[f32], &mut [u8]);
        let pairs: [(&str, usize, Scalar, Kernel); 3] = [
            (
                "Q8_0",
                34,
                super::quantize_row_q8_0_scalar,
                super::avx2::quantize_row_q8_0,
            ),
            (
                "Q5_0",
                22,
                super::quantize_row_q5_0_scalar,
                super::avx2::quantize_row_q5_0,
            ),
            (
                "Q5_1",
                24,
                super::quantize_row_q5_1_scalar,
                super::avx2::quantize_row_q5_1,
            ),
        ];
        for (name, size, scalar, simd) in pairs {
            let mut want = vec![0u8; x.len() / 32 * size];
            let mut got = want.clone();
            scalar(&x, &mut want);
            // SAFETY: AVX2 is present (checked above).
            unsafe { simd(&x, &mut got) };
            for (b, (w, g)) in want.chunks(size).zip(got.chunks(size)).enumerate() {
                assert_eq!(w, g, "{name} block {b}: {:?}", &x[b * 32..b * 32 + 32]);
            }
        }
        // BF16 and F16 on a length that leaves a tail for the scalar loop.
        let n = x.len() - 5;
        let halves: [(&str, Scalar, Kernel); 2] = [
            ("BF16", super::quantize_row_bf16_scalar, super::avx2::quantize_row_bf16),
            ("F16", super::quantize_row_f16_scalar, super::avx2::quantize_row_f16),
        ];
        for (name, scalar, simd) in halves {
            if name == "F16" && !std::arch::is_x86_feature_detected!("f16c") {
                continue;
            }
            let mut want = vec![0u8; 2 * n];
            let mut got = want.clone();
            scalar(&x[..n], &mut want);
            // SAFETY: AVX2 (and for F16, F16C) is present (checked above).
            unsafe { simd(&x[..n], &mut got) };
            for (i, (w, g)) in want.chunks(2).zip(got.chunks(2)).enumerate() {
                assert_eq!(w, g, "{name} value {i}: {:e} ({:#010x})", x[i], x[i].to_bits());
            }
        }
    }
}
