//! Bakes libtorch's library directory into the rpath of everything we link, so `fireweave-ai` and the test
//! binaries run without LD_LIBRARY_PATH. torch-sys links libtorch dynamically but leaves the loader to find it.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_none() {
        return;
    }
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
