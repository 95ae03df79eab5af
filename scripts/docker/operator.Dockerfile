# syntax=docker/dockerfile:1
# The operator image: `fireweave-ai operator`, which also runs the dataset worker Jobs. Built without the
# `train` and `serve` features, so it carries neither libtorch nor llama.cpp (scripts/check-operator-links.sh
# checks the same build in CI), with the size-optimized `operator` profile of Cargo.toml (its comment says
# why). Build from the repository root:
#   docker build -f scripts/docker/operator.Dockerfile -t ghcr.io/fireweave/fireweave-ai:0.1.0 .
# Base images are pinned by tag; pin them by digest in your registry mirror for reproducible builds.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# Cargo.toml names its test and bench targets explicitly; cargo loads them even for a --bin build.
COPY benches benches
COPY tests tests
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile operator --locked --no-default-features --bin fireweave-ai \
 && install -D target/operator/fireweave-ai /out/fireweave-ai

# glibc, libgcc and CA certificates, nothing else; the same Debian release as the build stage.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/fireweave-ai /usr/local/bin/fireweave-ai
# distroless "nonroot": the uid/gid the chart and the operator's worker Pods run as.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fireweave-ai"]
CMD ["operator"]
