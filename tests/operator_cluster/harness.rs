//! The harness's own pure pieces: `$(VAR)` expansion as the kubelet does it, and the fallback's path rewriting.

use std::path::PathBuf;

use crate::cluster::container::{Mount, expand, rewrite};

#[test]
fn references_expand_and_escapes_stay() {
    let env = vec![("A".to_string(), "x".to_string())];
    assert_eq!(expand("$(A)/$(B)/$$(A)", &env), "x/$(B)/$(A)");
}

#[test]
fn mount_paths_are_rewritten_as_prefixes() {
    let m = [Mount {
        host: PathBuf::from("/h/spec"),
        path: "/etc/fireweave".into(),
        read_only: true,
    }];
    assert_eq!(rewrite("/etc/fireweave/spec.json", &m), "/h/spec/spec.json");
    assert_eq!(
        rewrite("--spec=/etc/fireweave/spec.json", &m),
        "--spec=/h/spec/spec.json"
    );
    assert_eq!(rewrite("/etc/fireweave-sources/x", &m), "/etc/fireweave-sources/x");
}
