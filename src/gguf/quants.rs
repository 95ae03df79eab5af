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

/// `roundf` (halves away from zero), exactly, for the |x| <= 128 the Q8_0 kernel rounds: truncation to i32 is
/// one SSE2 instruction that vectorizes, where `f32::round` is a libm call on baseline x86-64; `x - trunc(x)` is
/// exact below 2^23, so the half test is too.
#[inline]
fn round_half_away(x: f32) -> i32 {
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

pub fn quantize_row_f16(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
    }
}

pub fn quantize_row_bf16(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
    }
}

pub fn quantize_row_f32(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn quantize_row_q8_0(x: &[f32], out: &mut [u8]) {
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

pub fn quantize_row_q5_0(x: &[f32], out: &mut [u8]) {
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
            let xi0 = ((x0 + 16.5) as i8 as u8).min(31);
            let xi1 = ((x1 + 16.5) as i8 as u8).min(31);
            b.qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        b.qh = qh.to_le_bytes();
        b.write(ob);
    }
}

pub fn quantize_row_q5_1(x: &[f32], out: &mut [u8]) {
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
        // Through i32 (one SSE2 instruction) rather than u32: the values are within [0, 31.5].
        let xi: [u32; QK] = std::array::from_fn(|j| ((xb[j] - min) * id + 0.5) as i32 as u32);
        b.qs = std::array::from_fn(|j| ((xi[j] & 0x0f) | ((xi[j + QK / 2] & 0x0f) << 4)) as u8);
        // Value j's fifth bit goes to bit j of qh (the first half's to bits 0-15, the second's to 16-31).
        b.qh = fifth_bits(&xi).to_le_bytes();
        b.write(ob);
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
fn make_qx_quants16(x: &[f32], l: &mut [i8]) -> f32 {
    const NMAX: i32 = 32;
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
    let mut iscale = -(NMAX as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (i, &v) in x.iter().enumerate() {
        let q = nearest_int(iscale * v).clamp(-NMAX, NMAX - 1);
        l[i] = (q + NMAX) as i8;
        let w = v * v;
        let qf = q as f32;
        sumlx += w * v * qf;
        suml2 += w * qf * qf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9i32 {
        if is == 0 {
            continue;
        }
        iscale = -(NMAX as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let q = nearest_int(iscale * v).clamp(-NMAX, NMAX - 1) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (i, &v) in x.iter().enumerate() {
                l[i] = (NMAX + nearest_int(iscale * v).clamp(-NMAX, NMAX - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
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
}
