//! Links libtorch the way the trainer needs it:
//! - its library directory goes into the rpath of everything we link, so `fireweave-ai` and the test binaries
//!   run without LD_LIBRARY_PATH (torch-sys links libtorch dynamically but leaves the loader to find it);
//! - when that libtorch is a CUDA build (the PyPI torch wheel is), `libtorch_cuda.so` is linked with
//!   `--no-as-needed`. Nothing in our code calls into it by name, so the linker's default `--as-needed` drops
//!   it, and then its CUDA kernels are never registered: every tensor op on `cuda` fails as if the build had
//!   no GPU support. A CPU-only libtorch has no such file and links as before.
//!
//! It also ties the build to the checkout's path. Cargo's fingerprints do not include where a workspace member
//! lives, so a checkout at another path that shares the target directory (`.ci/run` builds a clean clone into
//! the same `~/.cache/fireweave-ai/target`) found the other checkout's test binaries fresh, with that
//! checkout's `CARGO_MANIFEST_DIR` compiled in: tests then read `crds/`, `charts/` and `manifests/` of a
//! folder that was gone or held another commit. Watching this file by absolute path makes a moved checkout
//! re-run this script and rebuild the crate.
fn main() {
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        println!(
            "cargo:rerun-if-changed={}",
            std::path::Path::new(&dir).join("build.rs").display()
        );
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_none() {
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = std::path::Path::new(&libtorch).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let cuda = lib.join("libtorch_cuda.so");
    println!("cargo:rerun-if-changed={}", cuda.display());
    if cuda.exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-cfg=torch_cuda_linked");
    }
    println!("cargo:rustc-check-cfg=cfg(torch_cuda_linked)");
}
