//! What a local run remembers between runs: each resource's status, written as the whole object (what
//! `kubectl get -o yaml` would show) under `<artifacts>/status/`, plus the digest of the inputs it was built
//! from. A step whose inputs digest is unchanged and whose outputs are still intact is not run again.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use super::manifest::Key;
use crate::artifact;
use crate::contract::Digest;

/// Annotation on a status file recording the inputs digest the status was produced from.
pub const INPUTS_ANNOTATION: &str = "ai.fireweave.io/local-inputs-digest";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Artifact(#[from] artifact::IoError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the status of `key` lives.
pub fn status_path(artifacts: &Path, key: &Key) -> PathBuf {
    artifacts
        .join("status")
        .join(&key.namespace)
        .join(format!("{}-{}.yaml", key.kind.to_ascii_lowercase(), key.name))
}

/// A stored object with its status and the inputs digest it records.
pub struct Stored<T> {
    pub object: T,
    pub inputs_digest: Option<Digest>,
}

/// Reads the stored object of `key`, if any. A file that no longer parses (edited by hand, written by an
/// older version) counts as absent: the step runs again rather than trusting it.
pub fn read<T: DeserializeOwned>(artifacts: &Path, key: &Key) -> Option<Stored<T>> {
    let path = status_path(artifacts, key);
    let text = std::fs::read_to_string(&path).ok()?;
    let value: serde_json::Value = serde_yaml::from_str(&text).ok()?;
    let inputs_digest = value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(INPUTS_ANNOTATION))
        .and_then(|d| d.as_str())
        .and_then(|d| Digest::parse(d).ok());
    match serde_json::from_value(value) {
        Ok(object) => Some(Stored { object, inputs_digest }),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable status file");
            None
        }
    }
}

/// Writes `object` (with its status) and the inputs digest, atomically: a crash leaves the old file or the
/// new one, never half of one.
pub fn write<T: Serialize>(
    artifacts: &Path,
    key: &Key,
    object: &T,
    inputs_digest: &Digest,
) -> Result<PathBuf, StateError> {
    let path = status_path(artifacts, key);
    let mut value = serde_json::to_value(object).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    value["metadata"]["annotations"][INPUTS_ANNOTATION] = serde_json::Value::from(inputs_digest.to_string());
    let text = serde_yaml::to_string(&value).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    artifact::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Incremental `sha256:` digest of the things a step depends on.
#[derive(Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn new(label: &str) -> Self {
        let mut f = Fingerprint(Sha256::new());
        f.text(label);
        f
    }

    /// Adds a length-prefixed string, so ("ab","c") and ("a","bc") differ.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }

    pub fn json<T: Serialize>(&mut self, value: &T) -> &mut Self {
        self.text(&serde_json::to_string(value).unwrap_or_default())
    }

    /// Adds a file's content.
    pub fn file(&mut self, path: &Path) -> Result<&mut Self, StateError> {
        let digest = artifact::file_digest(path)?;
        Ok(self.text(&digest.to_string()))
    }

    /// Adds every file below `dir` (sorted relative names and contents), skipping hidden entries.
    pub fn tree(&mut self, dir: &Path) -> Result<&mut Self, StateError> {
        for file in files_below(dir)? {
            let rel = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy().into_owned();
            self.text(&rel);
            self.file(&file)?;
        }
        Ok(self)
    }

    /// Adds a model folder cheaply: small files by content, weight files (gigabytes for an 8B model) by
    /// name, size and modification time.
    pub fn model_dir(&mut self, dir: &Path) -> Result<&mut Self, StateError> {
        for file in files_below(dir)? {
            let rel = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy().into_owned();
            self.text(&rel);
            let meta = std::fs::metadata(&file).map_err(io(&file))?;
            if meta.len() > 16 << 20 {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                self.text(&format!("{} bytes, modified {mtime}", meta.len()));
            } else {
                self.file(&file)?;
            }
        }
        Ok(self)
    }

    pub fn finish(&self) -> Digest {
        Digest::from_hasher(self.0.clone())
    }
}

/// Regular files below `dir` (or `dir` itself when it is a file), sorted, hidden names skipped.
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>, StateError> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_fields_and_follows_content() {
        let a = Fingerprint::new("x").text("ab").text("c").finish();
        let b = Fingerprint::new("x").text("a").text("bc").finish();
        assert_ne!(a, b);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.jsonl"), "1\n").unwrap();
        let before = Fingerprint::new("d").tree(dir.path()).unwrap().finish();
        assert_eq!(before, Fingerprint::new("d").tree(dir.path()).unwrap().finish());
        std::fs::write(dir.path().join("f.jsonl"), "2\n").unwrap();
        assert_ne!(before, Fingerprint::new("d").tree(dir.path()).unwrap().finish());
    }

    #[test]
    fn status_round_trips_with_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key {
            kind: "Dataset",
            namespace: "default".into(),
            name: "d".into(),
        };
        let obj = serde_json::json!({"apiVersion": "ai.fireweave.io/v1alpha1", "kind": "Dataset",
            "metadata": {"name": "d", "namespace": "default"}, "spec": {}, "status": {"phase": "Succeeded"}});
        let path = write(dir.path(), &key, &obj, &Digest::of(b"abc")).unwrap();
        assert!(path.ends_with("status/default/dataset-d.yaml"));
        let back: Stored<serde_json::Value> = read(dir.path(), &key).unwrap();
        assert_eq!(back.inputs_digest, Some(Digest::of(b"abc")));
        assert_eq!(back.object["status"]["phase"], "Succeeded");
    }
}
