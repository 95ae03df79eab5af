//! The trainer's CUDA linkage, checked without a GPU: a binary built against a CUDA libtorch must list
//! libtorch_cuda.so in its dynamic section (or CUDA kernels are never registered and a GPU node trains on
//! nothing), `doctor` must say so, and `--device cuda` on a machine without a GPU must fail at once with a
//! reason, not a panic from inside libtorch.
#![cfg(feature = "train")]

#[path = "train_support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fireweave-ai");

fn libtorch() -> PathBuf {
    PathBuf::from(std::env::var_os("LIBTORCH").expect("LIBTORCH is set (scripts/env.sh)"))
}

fn needed() -> Vec<String> {
    let out = Command::new("readelf")
        .args(["-d", BIN])
        .output()
        .expect("readelf runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect()
}

fn doctor() -> String {
    let out = Command::new(BIN).arg("doctor").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_cuda_libtorch_is_linked_with_its_cuda_kernels() {
    let needed = needed();
    assert!(needed.iter().any(|n| n == "libtorch_cpu.so"), "{needed:?}");
    let doctor = doctor();
    if libtorch().join("lib/libtorch_cuda.so").exists() {
        assert!(needed.iter().any(|n| n == "libtorch_cuda.so"), "not linked: {needed:?}");
        assert!(
            doctor.contains("cuda kernels linked (libtorch_cuda.so loaded)"),
            "{doctor}"
        );
    } else {
        assert!(doctor.contains("cuda kernels not compiled in"), "{doctor}");
    }
}

#[test]
fn cuda_without_a_gpu_is_refused_at_once_with_a_reason() {
    let doctor = doctor();
    let devices: i64 = doctor
        .split("devices=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no device count in: {doctor}"));
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("run.yaml");
    support::write_manifest(&manifest, &support::fixture("tiny-llama31"), "maxSteps: 1", 1, false);
    let log = tmp.path().join("termination-log");
    std::fs::write(&log, "").unwrap();
    let device = format!("cuda:{devices}");
    let out = Command::new(BIN)
        .args([
            "train",
            "--device",
            &device,
            "--metrics-addr",
            "127.0.0.1:0",
            "--no-progress",
        ])
        .arg("--spec")
        .arg(&manifest)
        .arg("--artifacts")
        .arg(tmp.path())
        .arg("--termination-log")
        .arg(&log)
        .output()
        .unwrap();
    let message = std::fs::read_to_string(&log).unwrap();
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.starts_with(&format!(
            "train failed: --device {device}: libtorch sees {devices} CUDA device(s) here"
        )),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    // Refused before any work: nothing was written for the run.
    assert!(!tmp.path().join("runs").exists());
}
