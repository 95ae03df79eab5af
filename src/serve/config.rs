//! Which models to serve and with what Modelfile-equivalent settings: `--model NAME=PATH[@sha256]` on the
//! command line, a YAML config file, or a ModelServing CR. All decisions here are pure; reading files and
//! hashing happen in `load` and `verify_sha256`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::options::Options;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--model {arg:?}: expected NAME=PATH.gguf[@sha256]")]
    BadModelArg { arg: String },
    #[error("--model {arg:?}: sha256 must be 64 hex digits, got {digest:?}")]
    BadDigest { arg: String, digest: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: sha256 mismatch: expected {expected}, file has {actual}")]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model {name:?} is defined twice")]
    Duplicate { name: String },
    #[error("no model to serve: give --model NAME=PATH.gguf, --config or --spec")]
    NoModels,
    #[error("{path}: {what}")]
    Spec { path: PathBuf, what: String },
}

/// One served model with its Modelfile-equivalent settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Replaces any system message the client did not send itself.
    #[serde(default)]
    pub system: Option<String>,
    /// A Jinja chat template that overrides the GGUF's `tokenizer.chat_template`.
    #[serde(default)]
    pub template: Option<String>,
    /// Default options; a request's own `options` win key by key.
    #[serde(default)]
    pub parameters: Options,
}

/// The YAML config file: `models: [{name, path, sha256?, system?, template?, parameters?}]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub models: Vec<ModelConfig>,
}

/// Parses `NAME=PATH[@sha256]`. The digest is split at the last `@` only when what follows is hex, so paths
/// containing `@` still work.
pub fn parse_model_arg(arg: &str) -> Result<ModelConfig, ConfigError> {
    let bad = || ConfigError::BadModelArg { arg: arg.to_string() };
    let (name, rest) = arg.split_once('=').ok_or_else(bad)?;
    if name.is_empty() || rest.is_empty() {
        return Err(bad());
    }
    let (path, sha256) = match rest.rsplit_once('@') {
        Some((p, d)) if !p.is_empty() && d.chars().all(|c| c.is_ascii_hexdigit()) => {
            let d = d.strip_prefix("sha256:").unwrap_or(d);
            if d.len() != 64 {
                return Err(ConfigError::BadDigest {
                    arg: arg.to_string(),
                    digest: d.to_string(),
                });
            }
            (p, Some(d.to_ascii_lowercase()))
        }
        _ => (rest, None),
    };
    Ok(ModelConfig {
        name: name.to_string(),
        path: PathBuf::from(path),
        sha256,
        ..ModelConfig::default()
    })
}

/// Reads a YAML config; relative model paths are resolved against the config file's folder.
pub fn load_config_file(path: &Path) -> Result<Vec<ModelConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: ConfigFile = serde_yaml::from_str(&text).map_err(|source| ConfigError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(file
        .models
        .into_iter()
        .map(|mut m| {
            if m.path.is_relative() {
                m.path = base.join(&m.path);
            }
            m.sha256 = m.sha256.map(|d| d.trim_start_matches("sha256:").to_ascii_lowercase());
            m
        })
        .collect())
}

/// Reads a ModelServing CR (YAML or JSON, the operator's spec.json) with a `model.gguf` source, through the
/// CRD's own type so its defaults (the FireWeave system prompt, the seed's sampling parameters) apply exactly
/// as they do in a cluster. Relative paths resolve against `artifacts`.
pub fn load_spec(path: &Path, artifacts: &Path) -> Result<ModelConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let spec_err = |what: String| ConfigError::Spec {
        path: path.to_path_buf(),
        what,
    };
    let cr: crate::api::ModelServing =
        serde_yaml::from_str(&text).map_err(|e| spec_err(format!("not a ModelServing resource: {e}")))?;
    let spec = cr.spec;
    let gguf = spec.model.gguf.ok_or_else(|| {
        spec_err(
            "spec.model.gguf is required for the built-in server (the operator resolves trainingRunRef into it)".into(),
        )
    })?;
    let mut model_path = PathBuf::from(&gguf.path);
    if model_path.is_relative() {
        model_path = artifacts.join(model_path);
    }
    if spec.modelfile.template.is_some() {
        // The Modelfile template is Ollama's Go template language; llama.cpp needs the model's Jinja one.
        tracing::warn!(
            "spec.modelfile.template is an Ollama template and applies to engine ollama only; the built-in server renders the GGUF's own chat template"
        );
    }
    let parameters = serde_json::to_value(&spec.modelfile.parameters)
        .and_then(serde_json::from_value)
        .map_err(|e| spec_err(format!("spec.modelfile.parameters: {e}")))?;
    Ok(ModelConfig {
        name: spec.model_name,
        path: model_path,
        sha256: Some(gguf.sha256.trim_start_matches("sha256:").to_ascii_lowercase()),
        system: Some(spec.modelfile.system),
        template: None,
        parameters,
    })
}

/// Merges command-line models over config-file models (same name: the command line wins, but its empty
/// settings keep the file's).
pub fn merge_models(from_file: Vec<ModelConfig>, from_cli: Vec<ModelConfig>) -> Result<Vec<ModelConfig>, ConfigError> {
    let mut by_name: BTreeMap<String, ModelConfig> = BTreeMap::new();
    for m in from_file {
        if by_name.insert(m.name.clone(), m.clone()).is_some() {
            return Err(ConfigError::Duplicate { name: m.name });
        }
    }
    for m in from_cli {
        match by_name.get_mut(&m.name) {
            Some(existing) => {
                existing.path = m.path;
                if m.sha256.is_some() {
                    existing.sha256 = m.sha256;
                }
            }
            None => {
                by_name.insert(m.name.clone(), m);
            }
        }
    }
    if by_name.is_empty() {
        return Err(ConfigError::NoModels);
    }
    Ok(by_name.into_values().collect())
}

/// Hashes a file in 1 MiB reads (GGUFs are gigabytes; never read them whole).
pub fn sha256_file(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks the digest before a byte of the model is handed to llama.cpp; returns the actual digest, which
/// `/api/tags` reports either way.
pub fn verify_sha256(path: &Path, expected: Option<&str>) -> Result<String, ConfigError> {
    let actual = sha256_file(path)?;
    match expected {
        Some(e) if !e.eq_ignore_ascii_case(&actual) => Err(ConfigError::DigestMismatch {
            path: path.to_path_buf(),
            expected: e.to_string(),
            actual,
        }),
        _ => Ok(actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_arg_with_and_without_digest() {
        let m = parse_model_arg("smol=/m/a@b.gguf").unwrap();
        assert_eq!(m.name, "smol");
        assert_eq!(m.path, PathBuf::from("/m/a@b.gguf"));
        assert_eq!(m.sha256, None);
        let d = "A".repeat(64);
        let m = parse_model_arg(&format!("x=/m.gguf@{d}")).unwrap();
        assert_eq!(m.sha256.as_deref(), Some("a".repeat(64).as_str()));
        assert!(matches!(
            parse_model_arg("x=/m.gguf@abc"),
            Err(ConfigError::BadDigest { .. })
        ));
        assert!(matches!(
            parse_model_arg("/m.gguf"),
            Err(ConfigError::BadModelArg { .. })
        ));
        assert!(matches!(
            parse_model_arg("=/m.gguf"),
            Err(ConfigError::BadModelArg { .. })
        ));
    }

    #[test]
    fn config_file_and_cli_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.yaml");
        std::fs::write(
            &path,
            "models:\n- name: a\n  path: a.gguf\n  system: be brief\n  parameters: {temperature: 0.2, stop: [\"END\"]}\n",
        )
        .unwrap();
        let file = load_config_file(&path).unwrap();
        assert_eq!(file[0].path, dir.path().join("a.gguf"));
        assert_eq!(file[0].parameters.temperature, Some(0.2));
        let merged = merge_models(file, vec![parse_model_arg("a=/x.gguf").unwrap()]).unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].path, PathBuf::from("/x.gguf"));
        assert_eq!(merged[0].system.as_deref(), Some("be brief"));
        assert!(matches!(merge_models(vec![], vec![]), Err(ConfigError::NoModels)));
        std::fs::write(&path, "models:\n- name: a\n  path: a.gguf\n  bogus: 1\n").unwrap();
        assert!(matches!(load_config_file(&path), Err(ConfigError::Yaml { .. })));
    }

    #[test]
    fn digest_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, b"abc").unwrap();
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(verify_sha256(&path, Some(good)).unwrap(), good);
        assert!(matches!(
            verify_sha256(&path, Some(&"0".repeat(64))),
            Err(ConfigError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn spec_with_gguf_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cr.yaml");
        std::fs::write(
            &path,
            "apiVersion: ai.fireweave.io/v1alpha1\nkind: ModelServing\nmetadata: {name: m}\nspec:\n  model:\n    gguf: {path: runs/x.gguf, sha256: 'sha256:ABC'}\n  modelfile:\n    system: sys\n    parameters: {temperature: 0.5, top_k: 40}\n",
        )
        .unwrap();
        let m = load_spec(&path, Path::new("/artifacts")).unwrap();
        assert_eq!(m.name, "network-security-expert");
        assert_eq!(m.path, PathBuf::from("/artifacts/runs/x.gguf"));
        assert_eq!(m.system.as_deref(), Some("sys"));
        assert_eq!(m.sha256.as_deref(), Some("abc"));
        assert_eq!(m.parameters.top_k, Some(40));
        assert_eq!(m.parameters.temperature, Some(0.5));
        // Unset parameters take the CRD's defaults (the seed's Modelfile), as in a cluster.
        assert_eq!(m.parameters.repeat_penalty, Some(1.1));
    }
}
