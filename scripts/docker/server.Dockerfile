# syntax=docker/dockerfile:1
# The built-in server image, CPU variant: `fireweave-ai serve` on llama.cpp (the `serve` feature), used by
# ModelServings with `engine: builtin`. The CUDA variant is server-cuda.Dockerfile.
#   docker build -f scripts/docker/server.Dockerfile -t ghcr.io/fireweave/fireweave-ai-serve:0.1.0 .

FROM docker.io/library/rust:1.95-bookworm AS build
# What llama.cpp's bindings need to build (the same packages scripts/provision.sh installs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches benches
COPY tests tests
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --features serve --bin fireweave-ai \
 && install -D target/release/fireweave-ai /out/fireweave-ai

# glibc, libstdc++ and libgomp (llama.cpp's OpenMP threads); the same Debian release as the build stage.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/fireweave-ai /usr/local/bin/fireweave-ai
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fireweave-ai"]
CMD ["serve"]
