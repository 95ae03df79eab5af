//! GGUF benchmark (prints figures, asserts nothing about speed): our single-pass Hugging Face → Q4_K_M
//! against llama.cpp's two-step pipeline on the same checkpoint and machine, then per-kernel throughput.
//!
//! - ours: `fireweave-ai quantize --model M --type Q4_K_M`;
//! - llama.cpp: `convert_hf_to_gguf.py M --outtype f16` (llama.cpp's own converter, from the llama.cpp sources
//!   vendored in PyPI `llama-cpp-python`), then `llama_model_quantize` to Q4_K_M (run in a child of this binary).
//!
//! Each step runs as its own process under `/usr/bin/time`, which gives wall time and peak RSS.
//! Run it with `scripts/bench_gguf.sh` (fetches the converter and its Python packages, then
//! `cargo bench --no-default-features --features serve --bench gguf_pipeline`).
//! Environment: `FIREWEAVE_CONVERT_HF` (the converter script; its `gguf-py` must sit beside it),
//! `FIREWEAVE_BENCH_MODEL` (default: the SmolLM2-135M fixture).

use std::path::{Path, PathBuf};
use std::process::Command;

use fireweave_ai::gguf::Mix;

/// Wall seconds and peak RSS (MiB) of one child process.
struct Cost {
    wall_s: f64,
    rss_mib: f64,
}

/// Runs `cmd` under GNU time; panics with the child's stderr when it fails.
fn timed(what: &str, cmd: &mut Command) -> Cost {
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(report.path())
        .arg(program)
        .args(args);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    let out = wrapped
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start /usr/bin/time (apt install time): {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(report.path()).expect("time report");
    let mut fields = text.split_whitespace();
    let wall_s = fields.next().and_then(|v| v.parse().ok()).expect("wall seconds");
    let rss_kib: f64 = fields.next().and_then(|v| v.parse().ok()).expect("max RSS");
    Cost {
        wall_s,
        rss_mib: rss_kib / 1024.0,
    }
}

/// The child mode: llama.cpp's quantizer on a GGUF file, with every core.
fn llama_quantize(input: &Path, output: &Path) {
    let inp = std::ffi::CString::new(input.to_str().expect("utf8")).expect("cstr");
    let out = std::ffi::CString::new(output.to_str().expect("utf8")).expect("cstr");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: plain C call with valid NUL-terminated paths and a params struct from llama.cpp's defaults.
    let rc = unsafe {
        let mut p = llama_cpp_sys_2::llama_model_quantize_default_params();
        p.ftype = Mix::Q4KM.file_type() as _;
        p.nthread = threads as _;
        llama_cpp_sys_2::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &p)
    };
    assert_eq!(rc, 0, "llama_model_quantize failed");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--llama-quantize") {
        llama_quantize(Path::new(&args[i + 1]), Path::new(&args[i + 2]));
        return;
    }
    let fixtures = std::env::var("FIREWEAVE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_default();
    let model = std::env::var("FIREWEAVE_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or(fixtures.join("smollm2-135m"));
    let convert =
        PathBuf::from(std::env::var("FIREWEAVE_CONVERT_HF").expect(
            "FIREWEAVE_CONVERT_HF: path to llama.cpp's convert_hf_to_gguf.py (scripts/bench_gguf.sh sets it up)",
        ));
    let dir = tempfile::tempdir().expect("tempdir");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("gguf_pipeline: {} → Q4_K_M, {cores} cores", model.display());

    let ours = timed(
        "fireweave-ai quantize",
        Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
            .args(["quantize", "--type", "Q4_K_M", "--model"])
            .arg(&model)
            .arg("--out-dir")
            .arg(dir.path()),
    );
    let f16 = dir.path().join("llama-f16.gguf");
    let gguf_py = convert.parent().expect("script folder").join("gguf-py");
    let step1 = timed(
        "convert_hf_to_gguf.py",
        Command::new("python3")
            .arg(&convert)
            .arg(&model)
            .args(["--outtype", "f16", "--outfile"])
            .arg(&f16)
            .env("PYTHONPATH", &gguf_py),
    );
    let theirs_q4 = dir.path().join("llama-Q4_K_M.gguf");
    let step2 = timed(
        "llama_model_quantize",
        Command::new(std::env::current_exe().expect("exe"))
            .arg("--llama-quantize")
            .arg(&f16)
            .arg(&theirs_q4),
    );
    let theirs_wall = step1.wall_s + step2.wall_s;
    let theirs_rss = step1.rss_mib.max(step2.rss_mib);
    println!("{:<44} {:>9} {:>14}", "pipeline", "wall s", "peak RSS MiB");
    println!(
        "{:<44} {:>9.2} {:>14.0}",
        "fireweave-ai quantize (one pass)", ours.wall_s, ours.rss_mib
    );
    println!(
        "{:<44} {:>9.2} {:>14.0}",
        "llama.cpp: convert_hf_to_gguf.py → F16", step1.wall_s, step1.rss_mib
    );
    println!(
        "{:<44} {:>9.2} {:>14.0}",
        "llama.cpp: llama_model_quantize F16 → Q4_K_M", step2.wall_s, step2.rss_mib
    );
    println!(
        "{:<44} {:>9.2} {:>14.0}",
        "llama.cpp pipeline total", theirs_wall, theirs_rss
    );
    println!(
        "speed-up {:.2}× (target ≥ 3×); peak RSS {:.2}× of llama.cpp's",
        theirs_wall / ours.wall_s,
        ours.rss_mib / theirs_rss
    );
    println!();
    print!("{}", fireweave_ai::gguf::bench::run(1 << 22, 3));
}
