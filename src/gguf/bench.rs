//! `fireweave-ai gguf bench`: per-kernel throughput (million values/s, one thread) of our kernels and,
//! in builds with llama.cpp (`serve`), of llama.cpp's reference quantizer on the same data, with a byte
//! comparison. Prints figures; asserts nothing about speed.

use super::types::GgmlType;
use std::time::Instant;

const TYPES: [GgmlType; 8] = [
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::F16,
    GgmlType::BF16,
];

fn data(n: usize) -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

/// Best of `reps` runs of `f`, in million values per second.
fn rate(values: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    values as f64 / best / 1e6
}

#[cfg(feature = "serve")]
fn llama_cpp(t: GgmlType, x: &[f32], row: usize, out: &mut [u8]) -> usize {
    // SAFETY: `x` holds whole rows and `out` the exact quantized size of them.
    unsafe {
        llama_cpp_sys_2::ggml_quantize_chunk(
            t.id() as _,
            x.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            (x.len() / row) as i64,
            row as i64,
            std::ptr::null(),
        )
    }
}

pub fn run(values: usize, reps: usize) -> String {
    use std::fmt::Write;
    let row = 4096;
    let x = data(values.div_ceil(row) * row);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "kernel throughput, one thread, {} values (rows of {row}), best of {reps}",
        x.len()
    );
    let _ = writeln!(
        s,
        "{:<6} {:>14} {:>16} {:>10}",
        "type", "ours Mval/s", "llama.cpp Mval/s", "bytes"
    );
    for t in TYPES {
        let row_bytes = t.row_bytes(row as u64).unwrap_or(0) as usize;
        let mut ours = vec![0u8; row_bytes * (x.len() / row)];
        let q = t.quantizer().unwrap_or(super::quants::quantize_row_f32);
        let r_ours = rate(x.len(), reps, || {
            for (src, dst) in x.chunks_exact(row).zip(ours.chunks_exact_mut(row_bytes)) {
                q(src, dst);
            }
        });
        #[cfg(feature = "serve")]
        let (r_theirs, same) = {
            let mut theirs = vec![0u8; ours.len()];
            let r = rate(x.len(), reps, || {
                llama_cpp(t, &x, row, &mut theirs);
            });
            (format!("{r:.1}"), if theirs == ours { "identical" } else { "DIFFER" })
        };
        #[cfg(not(feature = "serve"))]
        let (r_theirs, same) = ("n/a (build with --features serve)".to_owned(), "-");
        let _ = writeln!(s, "{:<6} {:>14.1} {:>16} {:>10}", t.name(), r_ours, r_theirs, same);
    }
    s
}
