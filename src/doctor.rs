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
            "libtorch: cuda={} devices={} cudnn={} mkl={} threads={}",
            tch::Cuda::is_available(),
            tch::Cuda::device_count(),
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
