# syntax=docker/dockerfile:1
# The built-in server image, CUDA variant: `fireweave-ai serve` with llama.cpp's CUDA backend
# (the `serve` feature plus llama-cpp-2's `cuda` feature). CI has no CUDA toolkit, so it checks the same
# command without that one dependency feature (see tests/chart/test_dockerfiles.py).
#   docker build -f scripts/docker/server-cuda.Dockerfile -t ghcr.io/fireweave/fireweave-ai-serve:0.1.0-cuda .

FROM docker.io/library/rust:1.95-bookworm AS rust

# The CUDA compiler and libraries to build against; the Rust toolchain comes from the official image.
FROM docker.io/nvidia/cuda:12.8.1-devel-ubuntu24.04 AS build
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches benches
COPY tests tests
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --features serve,llama-cpp-2/cuda --bin fireweave-ai \
 && install -D target/release/fireweave-ai /out/fireweave-ai

# The CUDA runtime and cuBLAS that llama.cpp's CUDA backend links; the driver is mounted by the NVIDIA
# container toolkit.
FROM docker.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04
COPY --from=build /out/fireweave-ai /usr/local/bin/fireweave-ai
ENV HOME=/tmp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fireweave-ai"]
CMD ["serve"]
