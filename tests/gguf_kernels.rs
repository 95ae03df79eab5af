//! Our quantization kernels against llama.cpp's own (ggml_quantize_chunk, reference path) on the same
//! F32 input: the bytes must be identical, including on awkward data.
#![cfg(feature = "serve")]

use fireweave_ai::gguf::GgmlType;

/// Deterministic pseudo-normal values (xorshift + sum of uniforms), so failures reproduce.
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| ((next() + next() + next() + next()) - 2.0) * scale)
        .collect()
}

/// Rows of 512 values, each row a different hard case.
fn awkward_rows() -> Vec<(&'static str, Vec<f32>)> {
    let n = 512;
    let mut rows: Vec<(&'static str, Vec<f32>)> = vec![
        ("zeros", vec![0.0; n]),
        ("constant", vec![0.37; n]),
        ("negative constant", vec![-2.5; n]),
        ("random", noise(n, 1, 0.02)),
        ("random large", noise(n, 2, 300.0)),
        ("huge", noise(n, 3, 1e30)),
        ("tiny", noise(n, 4, 1e-30)),
        ("f16 subnormal range", noise(n, 5, 1e-6)),
        // Spreads so small that a block's 1/d overflows to infinity: C's float-to-int casts on x86 give the
        // "integer indefinite" there, where Rust's `as` would saturate.
        ("1/d overflows", noise(n, 10, 1e-39)),
        ("f32 subnormals", noise(n, 11, 1e-42)),
        ("positive only", noise(n, 6, 1.0).into_iter().map(f32::abs).collect()),
        (
            "negative only",
            noise(n, 7, 1.0).into_iter().map(|v| -v.abs()).collect(),
        ),
        (
            "half steps (rounding ties)",
            (0..n).map(|i| (i as f32 - 256.0) * 0.5).collect(),
        ),
        (
            "spike",
            (0..n)
                .map(|i| if i == 77 { 1000.0 } else { 0.001 * (i % 7) as f32 })
                .collect(),
        ),
    ];
    // Sub-blocks of zeros inside otherwise normal data: d == 0 for those sub-blocks only.
    let mut holes = noise(n, 8, 1.0);
    for (i, v) in holes.iter_mut().enumerate() {
        if (i / 16) % 3 == 0 || (32..64).contains(&i) {
            *v = 0.0;
        }
    }
    rows.push(("zero sub-blocks", holes));
    // 0.0 and -0.0 compare equal but store differently: whichever comes first must be the block's min/max.
    let signed_zeros: Vec<f32> = (0..n)
        .map(|i| match i % 5 {
            0 => -0.0,
            1 => 0.0,
            2 if (i / 32) % 2 == 0 => 0.25,
            3 if (i / 32) % 3 == 0 => -0.5,
            _ => -0.0,
        })
        .collect();
    rows.push(("signed zeros", signed_zeros));
    let positive_zeros: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else if i % 3 == 1 {
                -0.0
            } else {
                0.1
            }
        })
        .collect();
    rows.push(("zeros before negative zeros", positive_zeros));
    let mut mixed = noise(n, 9, 1e-3);
    for (i, v) in mixed.iter_mut().enumerate() {
        if i % 32 < 4 {
            *v *= 1e5;
        }
    }
    rows.push(("mixed magnitudes", mixed));
    rows
}

fn ggml_bytes(t: GgmlType, x: &[f32], n_per_row: usize) -> Vec<u8> {
    let rows = x.len() / n_per_row;
    let size = t.row_bytes(n_per_row as u64).expect("whole blocks") as usize * rows;
    let mut out = vec![0u8; size];
    // SAFETY: src holds rows*n_per_row floats and dst exactly the bytes ggml writes for them.
    let written = unsafe {
        llama_cpp_sys_2::ggml_quantize_chunk(
            t.id() as _,
            x.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            rows as i64,
            n_per_row as i64,
            std::ptr::null(),
        )
    };
    assert_eq!(written, size, "ggml wrote an unexpected size for {t}");
    out
}

fn ours(t: GgmlType, x: &[f32], n_per_row: usize) -> Vec<u8> {
    let row = t.row_bytes(n_per_row as u64).expect("whole blocks") as usize;
    let mut out = vec![0u8; row * (x.len() / n_per_row)];
    let q = t.quantizer().expect("a type we write");
    for (src, dst) in x.chunks_exact(n_per_row).zip(out.chunks_exact_mut(row)) {
        q(src, dst);
    }
    out
}

const WRITTEN: [GgmlType; 8] = [
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::F16,
    GgmlType::BF16,
];

#[test]
fn kernels_match_llama_cpp_on_awkward_rows() {
    for t in WRITTEN {
        for (case, row) in awkward_rows() {
            let want = ggml_bytes(t, &row, row.len());
            let got = ours(t, &row, row.len());
            if let Some(i) = want.iter().zip(&got).position(|(a, b)| a != b) {
                panic!(
                    "{t} on {case:?}: first differing byte {i} of {} (ggml {} vs ours {})",
                    want.len(),
                    want[i],
                    got[i]
                );
            }
        }
    }
}

#[test]
fn kernels_match_llama_cpp_on_a_weight_like_matrix() {
    let (rows, n) = (64, 1024);
    let x = noise(rows * n, 42, 0.05);
    for t in WRITTEN {
        assert!(
            ggml_bytes(t, &x, n) == ours(t, &x, n),
            "{t}: bytes differ on a 64x1024 random matrix"
        );
    }
}

#[test]
fn dequantization_matches_llama_cpp() {
    let x = noise(4096, 11, 0.5);
    for t in WRITTEN.into_iter().chain([GgmlType::Q4_0, GgmlType::Q4_1]) {
        let bytes = ggml_bytes(t, &x, x.len());
        let mut want = vec![0.0f32; x.len()];
        // SAFETY: the traits table is static; to_float reads bytes.len() bytes and writes x.len() floats.
        unsafe {
            let traits = llama_cpp_sys_2::ggml_get_type_traits(t.id() as _);
            let f = (*traits).to_float.expect("every type has to_float");
            f(bytes.as_ptr().cast(), want.as_mut_ptr(), x.len() as i64);
        }
        let mut got = vec![0.0f32; x.len()];
        (t.dequantizer())(&bytes, &mut got);
        assert!(want == got, "{t}: dequantized values differ from ggml's");
    }
}
