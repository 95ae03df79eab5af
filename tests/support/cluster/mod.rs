//! A real Kubernetes control plane for the operator's tests (kube-apiserver, etcd, kube-controller-manager,
//! kube-scheduler and KWOK's simulated nodes), the Job Pods' containers run as local processes, and the operator
//! installed from the Helm chart with the chart's identity. See tests/operator_cluster.rs for what it proves.
//!
//! One control plane serves every test of a test binary (`shared()`); each test installs the chart into a
//! namespace of its own (`ControlPlane::install`). The control plane's processes die with the test binary
//! (process.rs); a test's operators die with its `Release`, whose folder is kept when the test fails.
#![allow(dead_code)]

#[path = "../mod.rs"]
mod common;

pub mod audit;
pub mod container;
pub mod control_plane;
pub mod kubelet;
pub mod network;
pub mod pki;
pub mod process;
pub mod release;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub use control_plane::{ControlPlane, Options};
pub use kubelet::Image;

/// The test fixtures folder (`$FIREWEAVE_FIXTURES`; tests/fixtures/make_fixtures.py builds it).
pub fn fixtures() -> PathBuf {
    common::fixtures()
}

/// The locally built binary stands in for every fireweave-ai image.
pub const BINARY: &str = env!("CARGO_BIN_EXE_fireweave-ai");

/// The images of the chart's values (operator, trainer, server), each mapped to our binary with what its
/// Dockerfile sets: the entrypoint, its CMD, and `HOME=/tmp` where the Dockerfile sets it.
pub fn images() -> BTreeMap<String, Image> {
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(release::repo().join("charts/fireweave-ai/values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let mut out = BTreeMap::new();
    for (key, cmd, home) in [
        ("operator", vec!["operator"], false),
        ("trainer", vec![], true),
        ("server", vec!["serve"], true),
    ] {
        let image = &values["images"][key];
        let (registry, repository) = (
            image["registry"].as_str().unwrap_or_default(),
            image["repository"].as_str().unwrap_or_default(),
        );
        let name = if registry.is_empty() {
            repository.to_string()
        } else {
            format!("{registry}/{repository}")
        };
        let mut env = vec![(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        )];
        if home {
            env.push(("HOME".into(), "/tmp".into()));
        }
        // Where this machine's libtorch is, as the trainer image's LIBTORCH/ld config says where its own is.
        for var in ["LD_LIBRARY_PATH", "LIBTORCH"] {
            if let Ok(v) = std::env::var(var) {
                env.push((var.to_string(), v));
            }
        }
        out.insert(
            name,
            Image {
                entrypoint: vec![BINARY.to_string()],
                cmd: cmd.into_iter().map(String::from).collect(),
                env,
            },
        );
    }
    out
}

/// A folder for this test binary's control plane under cargo's temp dir; folders of earlier runs whose process
/// is gone are removed first.
fn run_dir(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok();
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    root.join(std::process::id().to_string())
}

/// The control plane shared by the tests of this binary, started on first use, with the chart's CRDs installed.
pub fn shared() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        let dir = run_dir("operator_cluster");
        let cp = ControlPlane::start(&dir, &Options::default(), images());
        eprintln!(
            "cluster: kube-apiserver /readyz after {:.1} s, all components and nodes ready after {:.1} s ({})",
            cp.to_readyz.as_secs_f64(),
            cp.to_ready.as_secs_f64(),
            dir.display()
        );
        install_crds(&cp);
        cp
    })
}

/// Applies the chart's CustomResourceDefinitions (the default render) and waits until they are Established.
pub fn install_crds(cp: &ControlPlane) {
    let crds: Vec<serde_json::Value> = release::render("fireweave", &serde_json::json!({}))
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 3, "the chart renders three CRDs");
    let yaml: Vec<String> = crds.iter().map(|d| serde_yaml::to_string(d).expect("yaml")).collect();
    cp.kubectl_with(
        &["apply", "--server-side", "--field-manager=helm", "-f", "-"],
        Some(&yaml.join("---\n")),
    )
    .unwrap_or_else(|e| panic!("the API server refused the chart's CRDs: {e}"));
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().expect("CRD name");
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{name}"),
            "--timeout=60s",
        ]);
    }
}

/// Generous limit for convergence waits: it catches a hang; it is not a measurement.
pub const PATIENCE: Duration = Duration::from_secs(300);
