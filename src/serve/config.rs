//! Which models to serve and with what Modelfile-equivalent settings: `--model NAME=PATH[@sha256]` on the
//! command line, a YAML config file, or a ModelServing CR. All decisions here are pure; reading files and
//! hashing happen in `load` and `verify_sha256`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::contract::Digest;

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
    #[error(transparent)]
    Verify(#[from] crate::artifact::VerifyError),
    #[error(transparent)]
    Document(#[from] crate::contract::DocumentError),
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
    /// Checked before the file is loaded; `sha256:<hex>` or bare hex.
    #[serde(default)]
    pub sha256: Option<Digest>,
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
        Some((p, d))
            if !p.is_empty() && (d.starts_with(Digest::PREFIX) || d.chars().all(|c| c.is_ascii_hexdigit())) =>
        {
            let digest = Digest::parse(d).map_err(|_| ConfigError::BadDigest {
                arg: arg.to_string(),
                digest: d.to_string(),
            })?;
            (p, Some(digest))
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
            m
        })
        .collect())
}

/// Reads a ModelServing CR (YAML or JSON, the operator's spec.json) with a `model.gguf` source, through the
/// contract's loader so the CRD's defaults (the FireWeave system prompt, the seed's sampling parameters) and
/// rules apply exactly as they do in a cluster. Relative paths resolve against `artifacts`.
pub fn load_spec(path: &Path, artifacts: &Path) -> Result<ModelConfig, ConfigError> {
    let cr: crate::api::ModelServing = crate::contract::document::load(path)?;
    model_config(cr.spec, path, artifacts)
}

/// The served model a ModelServing spec (with its GGUF resolved) describes.
pub fn model_config(
    spec: crate::api::ModelServingSpec,
    path: &Path,
    artifacts: &Path,
) -> Result<ModelConfig, ConfigError> {
    let spec_err = |what: String| ConfigError::Spec {
        path: path.to_path_buf(),
        what,
    };
    let gguf = spec.model.gguf.ok_or_else(|| {
        spec_err(
            "spec.model.gguf is required for the built-in server (the operator resolves trainingRunRef into it)".into(),
        )
    })?;
    let mut model_path = PathBuf::from(&gguf.path);
    if model_path.is_relative() {
        model_path = artifacts.join(model_path);
    }
    // `spec.modelfile.template` is Ollama's Go template language (it goes into the Modelfile for engine
    // ollama). The built-in server renders Jinja, so it honours a template of one of our chat formats by that
    // format's Jinja twin — the two are proven to render the same tokens — and refuses any other one rather
    // than serve a prompt format nobody checked.
    let template = match &spec.modelfile.template {
        None => None,
        Some(go) => {
            let format = crate::chat::ChatFormat::ALL
                .into_iter()
                .find(|f| f.ollama_template() == go.as_str())
                .ok_or_else(|| {
                    spec_err(
                        "spec.modelfile.template: engine builtin renders a template only when it is one of                          fireweave-ai's chat formats (the Modelfile templates of llama3 or chatml); unset it to                          use the GGUF's own template, or use engine ollama for a template of your own"
                            .into(),
                    )
                })?;
            Some(format.jinja().to_string())
        }
    };
    let parameters = serde_json::to_value(&spec.modelfile.parameters)
        .and_then(serde_json::from_value)
        .map_err(|e| spec_err(format!("spec.modelfile.parameters: {e}")))?;
    let sha256 = Digest::parse(&gguf.sha256).map_err(|e| spec_err(format!("spec.model.gguf.sha256: {e}")))?;
    Ok(ModelConfig {
        name: spec.model_name,
        path: model_path,
        sha256: Some(sha256),
        system: Some(spec.modelfile.system),
        template,
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

/// Checks the digest before a byte of the model is handed to llama.cpp; returns the actual digest, which
/// `/api/tags` reports either way.
pub fn verify_sha256(path: &Path, expected: Option<&Digest>) -> Result<Digest, ConfigError> {
    Ok(match expected {
        Some(e) => crate::artifact::verify_file(path, e)?,
        None => crate::artifact::file_digest(path).map_err(crate::artifact::VerifyError::from)?,
    })
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
        assert_eq!(m.sha256, Some(Digest::parse(&"a".repeat(64)).unwrap()));
        let m = parse_model_arg(&format!("x=/m.gguf@sha256:{}", "b".repeat(64))).unwrap();
        assert_eq!(m.sha256.unwrap().hex(), "b".repeat(64));
        assert!(matches!(
            parse_model_arg("x=/m.gguf@sha256:abc"),
            Err(ConfigError::BadDigest { .. })
        ));
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
        let good = Digest::parse("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap();
        assert_eq!(verify_sha256(&path, Some(&good)).unwrap(), good);
        assert_eq!(verify_sha256(&path, None).unwrap(), good);
        assert!(matches!(
            verify_sha256(&path, Some(&Digest::of(b"abd"))),
            Err(ConfigError::Verify(crate::artifact::VerifyError::Mismatch { .. }))
        ));
    }

    #[test]
    fn spec_with_gguf_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cr.yaml");
        std::fs::write(
            &path,
            "apiVersion: ai.fireweave.io/v1alpha1\nkind: ModelServing\nmetadata: {name: m}\nspec:\n  model:\n    gguf: {path: runs/x.gguf, sha256: 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'}\n  modelfile:\n    system: sys\n    parameters: {temperature: 0.5, top_k: 40}\n",
        )
        .unwrap();
        let m = load_spec(&path, Path::new("/artifacts")).unwrap();
        assert_eq!(m.name, "network-security-expert");
        assert_eq!(m.path, PathBuf::from("/artifacts/runs/x.gguf"));
        assert_eq!(m.system.as_deref(), Some("sys"));
        assert_eq!(m.sha256.unwrap().short(), "ba7816bf8f01");
        assert_eq!(m.parameters.top_k, Some(40));
        assert_eq!(m.parameters.temperature, Some(0.5));
        // Unset parameters take the CRD's defaults (the seed's Modelfile), as in a cluster.
        assert_eq!(m.parameters.repeat_penalty, Some(1.1));
    }
}
