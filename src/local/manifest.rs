//! Reading the user's YAML: files or folders of (multi-document) manifests, each document checked the way the
//! API server checks it — known kind, structural schema, CEL rules — and then read into the CRD's own type.
//! Every problem names the file, the document and the field, and all of them are reported at once.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::validate;
use crate::contract::document;

/// The API group and version every document must have.
pub const API_VERSION: &str = document::API_VERSION;

/// Where a document came from: the file and its 1-based position among the file's documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, document {}", self.file.display(), self.document)
    }
}

/// One problem with the manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// `Kind namespace/name` when known.
    pub object: Option<String>,
    /// Field path such as `spec.datasetRef.name`; empty when the document as a whole is wrong.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no .yaml, .yml or .json manifests in this folder")]
    EmptyFolder { path: PathBuf },
    #[error("no Dataset, TrainingRun or ModelServing in {0}")]
    Nothing(String),
    #[error("the manifests have {} problem(s); nothing was run:\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A resource read from the manifests.
pub use crate::contract::Object as Resource;

/// Kind, namespace and name: how resources refer to each other.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One document: where it is, what it is, and the object as written (for status files).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub origin: Origin,
    pub key: Key,
    pub resource: Resource,
}

impl Manifest {
    /// The folder relative paths in the spec resolve against.
    pub fn dir(&self) -> &Path {
        self.origin.file.parent().unwrap_or(Path::new("."))
    }
}

/// The manifest files a path stands for: the file, or the folder's .yaml/.yml/.json files in name order
/// (not recursive, like `kubectl apply -f DIR`, so an artifact folder inside it is never read).
pub fn expand(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let io = |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::metadata(path).map_err(io)?.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ManifestError::EmptyFolder { path: path.into() });
    }
    Ok(files)
}

/// Reads and checks every document of every path. Either all of them are valid, or every problem found is
/// returned together.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        for file in expand(path)? {
            let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Io {
                path: file.clone(),
                source,
            })?;
            parse_file(&file, &text, &mut manifests, &mut problems);
        }
    }
    for (i, m) in manifests.iter().enumerate() {
        if let Some(first) = manifests[..i].iter().find(|o| o.key == m.key) {
            problems.push(Problem {
                origin: m.origin.clone(),
                object: Some(m.key.to_string()),
                field: "metadata.name".into(),
                message: format!("{} is defined twice (first in {})", m.key, first.origin),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ManifestError::Invalid(problems));
    }
    if manifests.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ManifestError::Nothing(names.join(", ")));
    }
    Ok(manifests)
}

/// Parses one file's documents into `out`, recording problems instead of stopping at the first.
pub fn parse_file(file: &Path, text: &str, out: &mut Vec<Manifest>, problems: &mut Vec<Problem>) {
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            file: file.to_path_buf(),
            document: i + 1,
        };
        let problem = |object: Option<String>, field: &str, message: String| Problem {
            origin: origin.clone(),
            object,
            field: field.to_string(),
            message,
        };
        let value = match <Value as serde::Deserialize>::deserialize(doc) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                problems.push(problem(None, "", format!("not valid YAML: {e}")));
                // The YAML parser cannot resynchronise after a syntax error; later documents are unread.
                return;
            }
        };
        match parse_document(&value) {
            Ok((key, resource)) => out.push(Manifest { origin, key, resource }),
            Err((object, errors)) => {
                for e in errors {
                    problems.push(problem(object.clone(), &e.field, e.message));
                }
            }
        }
    }
}

/// One document, through the contract's loader (kind and apiVersion, metadata, schema and CEL, the typed
/// object and the checks the CRD cannot make).
fn parse_document(value: &Value) -> Result<(Key, Resource), (Option<String>, Vec<validate::FieldError>)> {
    let checked = document::check(value).map_err(|r| (r.object, r.errors))?;
    let key = Key {
        kind: checked.kind,
        namespace: checked.namespace,
        name: checked.name,
    };
    Ok((key, checked.object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Manifest>, Vec<String>) {
        let (mut out, mut problems) = (Vec::new(), Vec::new());
        parse_file(Path::new("m.yaml"), text, &mut out, &mut problems);
        (out, problems.iter().map(ToString::to_string).collect())
    }

    const DATASET: &str =
        "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  sources: [{path: data}]\n";

    #[test]
    fn documents_are_numbered_and_typed() {
        let text = format!(
            "{DATASET}---\n---\n{}",
            DATASET.replace("name: d", "name: e, namespace: ai")
        );
        let (out, problems) = parse(&text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].origin.document, 1);
        // The empty document in between still counts, as it does for kubectl.
        assert_eq!(out[1].origin.document, 3);
        assert_eq!(out[1].key.to_string(), "Dataset ai/e");
        assert!(matches!(&out[1].resource, Resource::Dataset(d) if d.spec.filters.min_quality_score == 50));
    }

    #[test]
    fn unknown_kind_and_wrong_version_are_named() {
        let (_, problems) = parse("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n");
        assert_eq!(
            problems,
            [
                "m.yaml, document 1: kind: unknown kind \"Secret\"; fireweave-ai takes Dataset, TrainingRun and ModelServing (ai.fireweave.io/v1alpha1)"
            ]
        );
        let (_, problems) = parse(&DATASET.replace("v1alpha1", "v1"));
        assert_eq!(
            problems,
            [
                "m.yaml, document 1 (Dataset default/d): apiVersion: \"ai.fireweave.io/v1\" is not served; use ai.fireweave.io/v1alpha1"
            ]
        );
    }

    #[test]
    fn invalid_fields_say_which() {
        let text = format!(
            "{DATASET}---\napiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {{name: Bad_Name}}\nspec:\n  baseModel: {{path: m}}\n  datasetRef: {{name: d}}\n  hyperparameters: {{learningRate: fast, epochz: 3}}\n"
        );
        let (out, mut problems) = parse(&text);
        assert_eq!(out.len(), 1);
        // Every problem is reported; their order follows the schema walk, which is not part of the contract.
        problems.sort();
        assert_eq!(
            problems,
            [
                "m.yaml, document 2 (TrainingRun default/Bad_Name): metadata.name: \"Bad_Name\" is not a valid name (lower-case letters, digits, '-' and '.')",
                "m.yaml, document 2 (TrainingRun default/Bad_Name): spec.hyperparameters.epochz: unknown field",
                "m.yaml, document 2 (TrainingRun default/Bad_Name): spec.hyperparameters.learningRate: expected number, got \"fast\"",
            ]
        );
    }

    #[test]
    fn cel_rules_apply() {
        let (_, problems) =
            parse(&DATASET.replace("sources: [{path: data}]", "sources: [{path: a, url: 'https://x/y'}]"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("spec.sources[0]: a source sets exactly one of path, configMap or url"),
            "{problems:?}"
        );
    }

    #[test]
    fn broken_yaml_is_reported_not_panicked() {
        let (out, problems) = parse(&format!("{DATASET}---\nkind: [unclosed\n"));
        assert_eq!(out.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("m.yaml, document 2: not valid YAML"),
            "{problems:?}"
        );
    }
}
