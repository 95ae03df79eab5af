"""The image Dockerfiles (scripts/docker/). No container engine runs here, so they are checked by construction:
pinned multi-stage builds, a non-root final user, and cargo build commands equal to the ones the test command
runs (scripts/test.sh and the link checks scripts/check-*-links.sh), so CI compiles exactly what the images ship."""
from __future__ import annotations

import re
import shlex

import pytest

from conftest import ROOT, rust

DOCKER = ROOT / "scripts" / "docker"
IMAGES = {
    "operator": ("operator.Dockerfile", None),
    "trainer": ("trainer.Dockerfile", "train,serve"),
    "server": ("server.Dockerfile", "serve"),
    "server-cuda": ("server-cuda.Dockerfile", "serve,llama-cpp-2/cuda"),
}


def text(name: str) -> str:
    # Continuation lines joined, as Docker reads them.
    return re.sub(r"\\\n\s*", " ", (DOCKER / name).read_text())


def stages(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)


def cargo_commands(script: str, verb: str) -> list[list[str]]:
    """Every `cargo <verb> ...` in a shell or Dockerfile text, split into words (up to `&&`, `|` or `;`)."""
    out = []
    for m in re.finditer(rf"\bcargo {verb}\b([^\n&|;]*)", script):
        out.append(shlex.split(m.group(1)))
    return out


def flags(words: list[str]) -> set[str]:
    """A cargo command's options that decide what is compiled (not where, how verbosely or how optimized)."""
    ignore = ("--release", "--profile", "--message-format", "--all-targets", "--target-dir")
    # `--profile NAME` as two words: the name goes with it.
    values = {i + 1 for i, w in enumerate(words) if w in ("--profile", "--target-dir", "--message-format")}
    return {w for i, w in enumerate(words) if not w.startswith(ignore) and i not in values}


def ci_commands() -> list[set[str]]:
    scripts = "\n".join(rust(f"scripts/{s}") for s in ("test.sh", "check-operator-links.sh", "check-trainer-links.sh"))
    scripts = "\n".join(line for line in scripts.splitlines() if not line.lstrip().startswith("#"))
    return [flags(c) for verb in ("build", "check") for c in cargo_commands(scripts, verb)]


@pytest.mark.parametrize("image", IMAGES)
def test_build_command_is_one_ci_runs(image):
    name, features = IMAGES[image]
    builds = cargo_commands(text(name), "build")
    assert len(builds) == 1, f"{name}: expected one cargo build, found {builds}"
    built = flags(builds[0])
    assert "--locked" in built and "--no-default-features" in built and "--bin" in built
    if features is None:
        assert not any(w.startswith("--features") for w in built)
    else:
        assert f"--features {features}" in " ".join(builds[0])
    if image == "server-cuda":
        # CI has no CUDA toolkit: it compiles the same command without the CUDA backend of llama.cpp.
        built = {w.replace(",llama-cpp-2/cuda", "") for w in built}
        assert 'llama-cpp-2 = { version' in rust("Cargo.toml")
    assert built in ci_commands(), f"{name} builds {sorted(built)}, which scripts/test.sh never compiles"


@pytest.mark.parametrize("image", IMAGES)
def test_images_are_pinned_multi_stage_and_non_root(image):
    name, _ = IMAGES[image]
    dockerfile = text(name)
    froms = stages(dockerfile)
    assert len(froms) >= 2, f"{name}: single-stage build ships the toolchain"
    for base in froms:
        ref = base.split("/")[-1]
        assert "@sha256:" in ref or (":" in ref and not ref.endswith(":latest")), f"{name}: {base} is not pinned"
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    uid = re.search(r"RUN_AS_USER: i64 = (\d+);", rust("src/controller/security.rs")).group(1)
    assert re.search(rf"^USER {uid}:{uid}$", final, re.M), f"{name}: the final stage must run as {uid}"
    assert 'ENTRYPOINT ["/usr/local/bin/fireweave-ai"]' in final
    # Only the binary (and, for the trainer, libtorch) is carried over from the build stage.
    for copy in re.findall(r"^COPY --from=build (\S+)", final, re.M):
        assert copy == "/out/fireweave-ai" or copy.startswith("/opt/venv/lib/"), copy


def test_one_rust_toolchain_at_least_the_crates_minimum():
    versions = {m for f, _ in IMAGES.values() for m in re.findall(r"rust:(\d+\.\d+)-", text(f))}
    assert len(versions) == 1, versions
    have = tuple(int(x) for x in versions.pop().split("."))
    need = tuple(int(x) for x in re.search(r'^rust-version = "(\d+\.\d+)', rust("Cargo.toml"), re.M).group(1).split("."))
    assert have >= need


def test_build_dependencies_are_the_provisioned_ones():
    provisioned = set(re.search(r"apt_pkgs=\(([^)]*)\)", rust("scripts/provision.sh")).group(1).split())
    for name in ("server.Dockerfile", "server-cuda.Dockerfile"):
        installed = set(re.search(r"apt-get install -y --no-install-recommends ([^&]+)", text(name)).group(1).split())
        assert {"cmake", "clang", "libclang-dev", "pkg-config"} <= installed
        assert installed - {"build-essential"} <= provisioned, name


def test_the_trainer_links_the_libtorch_ci_tests_against():
    trainer = text("trainer.Dockerfile")
    pins = re.findall(r"^torch==\S+$", rust("scripts/requirements.txt"), re.M)
    assert len(pins) == 1 and pins[0] == "torch==2.11.0"
    assert "grep -E '^torch==' /tmp/requirements.txt" in trainer
    libtorch = re.search(r"^ENV LIBTORCH=(\S+)$", trainer, re.M).group(1)
    # The rpath build.rs bakes in is LIBTORCH/lib: the runtime stage must hold libtorch at that very path.
    assert f"COPY --from=build {libtorch}/lib {libtorch}/lib" in trainer
    site = libtorch.rsplit("/", 1)[0]
    assert f"COPY --from=build {site}/nvidia {site}/nvidia" in trainer


def test_the_trainer_base_is_the_cuda_of_the_torch_wheel():
    """The CUDA version the installed torch wheel (the one CI tests with) was built for, read from its metadata."""
    from importlib import metadata

    try:
        requires = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        pytest.fail("torch is not installed in this Python (scripts/provision.sh installs it)")
    pins = [re.search(r"cuda-toolkit\[[^\]]*\]==([\d.]+)", r) for r in requires]
    wheel_cuda = next(m.group(1) for m in pins if m)
    assert re.findall(r"nvidia/cuda:([\d.]+)-", text("trainer.Dockerfile")) == [wheel_cuda]


def test_cuda_build_and_runtime_images_agree():
    cuda = text("server-cuda.Dockerfile")
    versions = set(re.findall(r"nvidia/cuda:(\d+\.\d+\.\d+)-", cuda))
    distros = set(re.findall(r"nvidia/cuda:[\d.]+-\w+-(\S+)", cuda))
    assert len(versions) == 1 and len(distros) == 1, (versions, distros)
