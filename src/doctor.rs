//! `fireweave-ai doctor`: what this build can do on this machine. The first thing to run on a new GPU node
//! (is CUDA visible to libtorch?) or when a pod behaves differently from a laptop.

use anyhow::Result;

pub fn run() -> Result<()> {
    println!("fireweave-ai {}", env!("CARGO_PKG_VERSION"));
    println!(
        "features: train={} serve={}",
        cfg!(feature = "train"),
        cfg!(feature = "serve")
    );
    println!(
        "threads available: {}",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    #[cfg(feature = "train")]
    {
        println!(
            "libtorch: cuda kernels {} devices={} cuda={} cudnn={} mkl={} threads={}",
            cuda_support(),
            tch::Cuda::device_count(),
            tch::Cuda::is_available(),
            tch::Cuda::cudnn_is_available(),
            tch::utils::has_mkl(),
            tch::get_num_threads(),
        );
    }
    #[cfg(feature = "serve")]
    {
        let _backend = llama_cpp_2::llama_backend::LlamaBackend::init()?;
        for dev in llama_cpp_2::list_llama_ggml_backend_devices() {
            println!(
                "llama.cpp device {}: {} ({}) backend={} memory={} MiB free of {} MiB",
                dev.index,
                dev.name,
                dev.description,
                dev.backend,
                dev.memory_free >> 20,
                dev.memory_total >> 20
            );
        }
    }
    Ok(())
}

/// Whether this binary can run CUDA kernels at all: built against a CUDA libtorch with libtorch_cuda.so linked
/// (see build.rs), and that library actually loaded into this process.
#[cfg(feature = "train")]
pub fn cuda_support() -> &'static str {
    let loaded = std::fs::read_to_string("/proc/self/maps").is_ok_and(|m| m.contains("libtorch_cuda.so"));
    match (cfg!(torch_cuda_linked), loaded) {
        (true, true) => "linked (libtorch_cuda.so loaded)",
        (true, false) => "linked but libtorch_cuda.so is not loaded",
        (false, _) => "not compiled in (a CPU-only libtorch)",
    }
}
