# syntax=docker/dockerfile:1
# The trainer image: `fireweave-ai train` (LoRA/QLoRA on CUDA libtorch 2.11), `fireweave-ai quantize` (GGUF
# export, pure Rust) and `fireweave-ai evaluate` (the GGUF files measured with llama.cpp, CPU), for TrainingRun
# Jobs. libtorch comes from the same PyPI wheel the test command
# builds and tests against (torch==2.11.0 in scripts/requirements.txt: the CUDA build with its CUDA libraries).
#   docker build -f scripts/docker/trainer.Dockerfile -t ghcr.io/fireweave/fireweave-ai-trainer:0.1.0 .

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv cmake clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "$(grep -E '^torch==' /tmp/requirements.txt)"
# As scripts/env.sh does: tch builds against the wheel's libtorch, and build.rs bakes its lib directory into
# the binary's rpath, so the runtime stage keeps the same path.
ENV LIBTORCH=/opt/venv/lib/python3.11/site-packages/torch
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches benches
COPY tests tests
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --features train,serve --bin fireweave-ai \
 && install -D target/release/fireweave-ai /out/fireweave-ai

# The wheel ships the CUDA libraries (torch 2.11 on PyPI: CUDA 13.0.2); the image adds glibc and the NVIDIA
# container toolkit's settings. This base's CUDA version is the wheel's, so the toolkit refuses a node whose
# driver is too old for it (NVIDIA_REQUIRE_CUDA) instead of failing at the first kernel.
FROM docker.io/nvidia/cuda:13.0.2-base-ubuntu24.04
# libtorch and the CUDA libraries it loads through $ORIGIN-relative rpaths (torch/lib -> ../../nvidia/*/lib).
COPY --from=build /opt/venv/lib/python3.11/site-packages/torch/lib /opt/venv/lib/python3.11/site-packages/torch/lib
COPY --from=build /opt/venv/lib/python3.11/site-packages/nvidia /opt/venv/lib/python3.11/site-packages/nvidia
COPY --from=build /out/fireweave-ai /usr/local/bin/fireweave-ai
# Non-root, the uid/gid the operator's Pods run as; HOME on the writable /tmp (the root file system is read-only).
ENV HOME=/tmp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fireweave-ai"]
