//! The resource document a worker reads: the CR itself (`apiVersion`, `kind`, `metadata`, `spec`), which the
//! operator renders into a ConfigMap as `spec.json` and `fireweave-ai run` writes next to its artifacts.
//!
//! One loader for every kind and every reader (the workers, the server, the local pipeline's manifests): it
//! checks what the API server checks when the object is applied — kind and apiVersion, metadata names, the
//! CRD's structural schema (unknown fields, types, bounds), the CEL rules — then reads the CRD's own type, so
//! its defaults apply exactly as in a cluster, and finally the few checks the CRD cannot express. A document
//! that went through an API server passes again; one that never did (a local manifest) is held to the same
//! rules. Problems name the file, the object and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::validate::{self, FieldError};
use crate::api::{Dataset, ModelServing, TrainingRun};

/// The API group and version every document must have.
pub const API_VERSION: &str = "ai.fireweave.io/v1alpha1";

/// The file a worker finds its document in, inside the spec ConfigMap's mount.
pub const SPEC_FILE: &str = "spec.json";
/// Where the spec ConfigMap is mounted in every worker Pod.
pub const SPEC_MOUNT: &str = "/etc/fireweave";

/// A resource of one of our kinds, as read from a document.
#[derive(Clone, Debug)]
pub enum Object {
    Dataset(Box<Dataset>),
    TrainingRun(Box<TrainingRun>),
    ModelServing(Box<ModelServing>),
}

/// One of our kinds: what the generic loader needs to know about it.
pub trait Kind: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Sized {
    const KIND: &'static str;
    fn from_object(object: Object) -> Option<Self>;
    /// Checks the CRD's schema and CEL rules do not make (each names its field).
    fn semantic_errors(&self) -> Vec<FieldError>;
}

impl Kind for Dataset {
    const KIND: &'static str = "Dataset";
    fn from_object(object: Object) -> Option<Self> {
        match object {
            Object::Dataset(d) => Some(*d),
            _ => None,
        }
    }
    fn semantic_errors(&self) -> Vec<FieldError> {
        self.spec.semantic_errors()
    }
}

impl Kind for TrainingRun {
    const KIND: &'static str = "TrainingRun";
    fn from_object(object: Object) -> Option<Self> {
        match object {
            Object::TrainingRun(t) => Some(*t),
            _ => None,
        }
    }
    fn semantic_errors(&self) -> Vec<FieldError> {
        self.spec.semantic_errors()
    }
}

impl Kind for ModelServing {
    const KIND: &'static str = "ModelServing";
    fn from_object(object: Object) -> Option<Self> {
        match object {
            Object::ModelServing(m) => Some(*m),
            _ => None,
        }
    }
    fn semantic_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// A checked document: which object it is, and the object.
#[derive(Clone, Debug)]
pub struct Checked {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub object: Object,
}

/// What is wrong with a document: the object (`Kind namespace/name`, when known) and every field problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub object: Option<String>,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        f.write_str(&errors.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: neither YAML nor JSON: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {rejected}")]
    Invalid { path: PathBuf, rejected: Rejected },
    #[error("{path}: is a {found}, not a {expected}")]
    WrongKind {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks one document (a parsed YAML/JSON value) and reads it into its kind's type.
pub fn check(value: &Value) -> Result<Checked, Rejected> {
    let reject = |object: Option<String>, errors: Vec<FieldError>| Rejected { object, errors };
    if !value.is_object() {
        return Err(reject(
            None,
            vec![field_error(
                "",
                "a manifest must be a mapping with apiVersion, kind, metadata and spec",
            )],
        ));
    }
    let kind_text = value.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(&kind) = validate::KINDS.iter().find(|k| **k == kind_text) else {
        let message = if kind_text.is_empty() {
            "missing; expected one of Dataset, TrainingRun, ModelServing".to_string()
        } else {
            format!(
                "unknown kind {kind_text:?}; fireweave-ai takes Dataset, TrainingRun and ModelServing ({API_VERSION})"
            )
        };
        return Err(reject(None, vec![field_error("kind", message)]));
    };
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let object = Some(format!("{kind} {namespace}/{name}"));
    let mut errors = Vec::new();
    let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if api_version != API_VERSION {
        errors.push(field_error(
            "apiVersion",
            format!("{api_version:?} is not served; use {API_VERSION}"),
        ));
    }
    if let Some(message) = dns_subdomain_problem(name) {
        errors.push(field_error("metadata.name", message));
    }
    if let Some(message) = value
        .pointer("/metadata/namespace")
        .and_then(|_| dns_label_problem(namespace))
    {
        errors.push(field_error("metadata.namespace", message));
    }
    errors.extend(validate::validate(kind, value));
    if !errors.is_empty() {
        return Err(reject(object, errors));
    }
    let typed = |e: serde_json::Error| reject(object.clone(), vec![field_error("spec", e.to_string())]);
    let read = match kind {
        "Dataset" => Object::Dataset(Box::new(serde_json::from_value(value.clone()).map_err(typed)?)),
        "TrainingRun" => Object::TrainingRun(Box::new(serde_json::from_value(value.clone()).map_err(typed)?)),
        _ => Object::ModelServing(Box::new(serde_json::from_value(value.clone()).map_err(typed)?)),
    };
    let semantic = match &read {
        Object::Dataset(d) => d.semantic_errors(),
        Object::TrainingRun(t) => t.semantic_errors(),
        Object::ModelServing(m) => m.semantic_errors(),
    };
    if !semantic.is_empty() {
        return Err(reject(object, semantic));
    }
    Ok(Checked {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        object: read,
    })
}

/// Reads a single-document file (YAML or JSON: JSON is YAML) of kind `K` and checks it.
pub fn load<K: Kind>(path: &Path) -> Result<K, DocumentError> {
    let text = std::fs::read_to_string(path).map_err(|source| DocumentError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse::<K>(&text, path)
}

/// [`load`] of text already read; `path` only names it in errors.
pub fn parse<K: Kind>(text: &str, path: &Path) -> Result<K, DocumentError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| DocumentError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let checked = check(&value).map_err(|rejected| DocumentError::Invalid {
        path: path.to_owned(),
        rejected,
    })?;
    let found = format!("{} {}/{}", checked.kind, checked.namespace, checked.name);
    K::from_object(checked.object).ok_or_else(|| DocumentError::WrongKind {
        path: path.to_owned(),
        found,
        expected: K::KIND,
    })
}

/// The document for a worker: apiVersion, kind, name, namespace, the annotations the operator passes to the
/// worker, and `spec` (which may differ from the object's own, e.g. paths made absolute by a local run). No
/// status, no managed fields: the worker needs the request, not the history.
pub fn render<K: Kind, S: Serialize>(owner: &K, spec: &S, annotations: &BTreeMap<String, String>) -> Value {
    let mut metadata = serde_json::json!({"name": owner.name_any(), "namespace": owner.namespace()});
    if !annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(annotations);
    }
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": metadata,
        "spec": spec,
    })
}

/// `metadata.namespace`, or `default` for a manifest without one (as `kubectl apply` would place it).
pub fn namespace_of<K: Resource>(object: &K) -> String {
    object.meta().namespace.clone().unwrap_or_else(|| "default".into())
}

/// Kubernetes object names: at most 253 characters of lower-case alphanumerics, '-' and '.', starting and
/// ending alphanumeric.
fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("Required value: every resource needs a name".into());
    }
    let ok = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| format!("{name:?} is not a valid name (lower-case letters, digits, '-' and '.')"))
}

/// Namespace names: DNS labels, at most 63 characters of lower-case alphanumerics and '-'.
fn dns_label_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| format!("{name:?} is not a valid namespace name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {name: r}\n\
                       spec:\n  baseModel: {path: m}\n  datasetRef: {name: d}\n";

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn loads_with_the_crd_defaults() {
        let (_d, path) = write(RUN);
        let tr: TrainingRun = load(&path).unwrap();
        assert_eq!(tr.spec.hyperparameters.epochs, 3);
        assert_eq!(tr.spec.lora.r, 16);
    }

    #[test]
    fn a_document_of_another_kind_is_refused() {
        let (_d, path) = write(RUN);
        let err = load::<Dataset>(&path).unwrap_err().to_string();
        assert!(err.ends_with("is a TrainingRun default/r, not a Dataset"), "{err}");
    }

    #[test]
    fn schema_cel_and_semantic_errors_name_file_object_and_field() {
        let cases = [
            ("  lora: {r: 0}\n", "spec.lora.r: lora.r must be positive"),
            ("  lora: {rank: 8}\n", "spec.lora.rank: unknown field"),
            ("  lora: {targetModules: [qkv]}\n", "spec.lora.targetModules: "),
            (
                "  hyperparameters: {maxSteps: 0}\n",
                "spec.hyperparameters.maxSteps: must be positive",
            ),
            (
                "  hyperparameters: {learningRate: fast}\n",
                "spec.hyperparameters.learningRate: expected number",
            ),
        ];
        for (extra, want) in cases {
            let (_d, path) = write(&format!("{RUN}{extra}"));
            let err = load::<TrainingRun>(&path).unwrap_err().to_string();
            assert!(
                err.contains("spec.json: TrainingRun default/r: ") && err.contains(want),
                "{extra}: {err}"
            );
        }
        let (_d, path) = write("kind: [unclosed");
        assert!(
            load::<TrainingRun>(&path)
                .unwrap_err()
                .to_string()
                .contains("neither YAML nor JSON")
        );
    }

    #[test]
    fn render_then_load_round_trips() {
        let (_d, path) = write(RUN);
        let tr: TrainingRun = load(&path).unwrap();
        let ann = BTreeMap::from([(
            "ai.fireweave.io/dataset-uri".to_string(),
            "datasets/default/d/x".to_string(),
        )]);
        let doc = render(&tr, &tr.spec, &ann);
        let (_d2, path2) = write(&serde_json::to_string(&doc).unwrap());
        let back: TrainingRun = load(&path2).unwrap();
        assert_eq!(back.spec, tr.spec);
        assert_eq!(
            back.annotations().get("ai.fireweave.io/dataset-uri").unwrap(),
            "datasets/default/d/x"
        );
    }
}
