//! A manifest file through `fireweave-ai run`'s loader (`local::manifest::parse_file`: multi-document YAML,
//! each document through the contract's loader — kind and apiVersion, metadata names, the CRD's structural
//! schema, its CEL rules, the typed read with the CRD's defaults, the checks the CRD cannot express), and the
//! single-document loader the workers use (`contract::document::parse`). Nothing may panic; every problem names
//! the file and the document; and a document that is accepted is accepted again after the round trip a worker
//! sees (rendered by the operator into spec.json, read back).
//!
//! Input: the file's bytes.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use fireweave_ai::api::{Dataset, ModelServing, TrainingRun};
use fireweave_ai::contract::Object;
use fireweave_ai::contract::document::{self, Kind};
use fireweave_ai::local::manifest;
use libfuzzer_sys::fuzz_target;

/// The worker's view of an accepted object: rendered as the operator renders spec.json, checked again.
fn round_trip<K: Kind>(object: &K, spec: &impl serde::Serialize) {
    let value = serde_json::to_value(object).expect("a typed object serializes");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(value["metadata"]["annotations"].clone()).unwrap_or_default();
    let doc = document::render(object, spec, &annotations);
    if let Err(r) = document::check(&doc) {
        panic!("an accepted object is refused after rendering: {r}\n{doc:#}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("fuzz/manifest.yaml");
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    manifest::parse_file(file, text, &mut out, &mut problems);
    for p in &problems {
        assert_eq!(p.origin.file, file);
        assert!(p.origin.document >= 1);
        assert!(!p.message.is_empty(), "{p}");
        assert!(p.to_string().starts_with("fuzz/manifest.yaml, document "), "{p}");
    }
    for m in &out {
        match &m.resource {
            Object::Dataset(d) => round_trip(&**d, &d.spec),
            Object::TrainingRun(t) => round_trip(&**t, &t.spec),
            Object::ModelServing(s) => round_trip(&**s, &s.spec),
        }
    }
    let _ = document::parse::<Dataset>(text, file);
    let _ = document::parse::<TrainingRun>(text, file);
    let _ = document::parse::<ModelServing>(text, file);
});
