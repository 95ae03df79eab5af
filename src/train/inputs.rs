//! Where a run's inputs are: the dataset build to train on and the base model folder.

use super::hub::{self, HubError};
use super::spec;
use crate::api::TrainingRun;
use crate::artifact;
use crate::contract::{Digest, layout};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("dataset {dir} (from {source_name}): {message}")]
    Dataset {
        dir: PathBuf,
        source_name: &'static str,
        message: String,
    },
    #[error("dataset {dir} (from {source_name}): digest is {actual}, expected {expected}")]
    DatasetDigest {
        dir: PathBuf,
        source_name: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("spec.baseModel.path {path}: not a model folder (no config.json); looked in {tried}")]
    ModelPath { path: String, tried: String },
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Io(#[from] artifact::IoError),
}

/// Where the dataset location came from, most specific first.
#[derive(Clone, Debug, Default)]
pub struct DatasetHints {
    /// `--dataset DIR`.
    pub cli: Option<PathBuf>,
    /// `FIREWEAVE_DATASET_URI` / `FIREWEAVE_DATASET_DIGEST`, set by the operator on the Job.
    pub env_uri: Option<String>,
    pub env_digest: Option<String>,
}

impl DatasetHints {
    pub fn from_env(cli: Option<PathBuf>) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        DatasetHints {
            cli,
            env_uri: var("FIREWEAVE_DATASET_URI"),
            env_digest: var("FIREWEAVE_DATASET_DIGEST"),
        }
    }
}

/// The chosen dataset folder, its digest (computed) and where the choice came from.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetInput {
    pub dir: PathBuf,
    pub digest: Digest,
    pub source: &'static str,
}

/// A URI from the operator: relative to the artifact root (absolute paths are taken as they are).
fn under(artifacts: &Path, uri: &str) -> PathBuf {
    let p = Path::new(uri);
    if p.is_absolute() {
        p.to_owned()
    } else {
        artifacts.join(p)
    }
}

/// The folder to read and the digest it must have: `--dataset`, else the operator's env variables, else the
/// spec.json annotations, else (a local run with none of these) the newest build of `spec.datasetRef`.
pub fn choose_dataset(
    tr: &TrainingRun,
    artifacts: &Path,
    hints: &DatasetHints,
) -> Result<(PathBuf, Option<String>, &'static str), InputError> {
    if let Some(dir) = &hints.cli {
        return Ok((dir.clone(), None, "--dataset"));
    }
    if let Some(uri) = &hints.env_uri {
        return Ok((under(artifacts, uri), hints.env_digest.clone(), "FIREWEAVE_DATASET_URI"));
    }
    if let (Some(uri), digest) = spec::dataset_annotation(tr) {
        return Ok((under(artifacts, uri), digest.map(str::to_owned), "spec.json annotation"));
    }
    let root = artifacts.join(layout::dataset_builds(&spec::namespace(tr), &tr.spec.dataset_ref.name));
    let newest = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("train.jsonl").is_file())
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max();
    match newest {
        Some((_, dir)) => {
            tracing::warn!(dataset = %dir.display(), "no dataset named by the operator; using the newest build");
            Ok((dir, None, "newest build of spec.datasetRef"))
        }
        None => Err(InputError::Dataset {
            dir: root,
            source_name: "spec.datasetRef",
            message: "no build with a train.jsonl".into(),
        }),
    }
}

/// Chooses the dataset folder, checks it has a train.jsonl, and verifies its digest when one was given.
pub fn dataset(tr: &TrainingRun, artifacts: &Path, hints: &DatasetHints) -> Result<DatasetInput, InputError> {
    let (dir, expected, source) = choose_dataset(tr, artifacts, hints)?;
    if !dir.join("train.jsonl").is_file() {
        return Err(InputError::Dataset {
            dir,
            source_name: source,
            message: "no train.jsonl".into(),
        });
    }
    let digest = artifact::folder_digest(&dir)?;
    let expected = match expected.as_deref().map(Digest::parse).transpose() {
        Ok(e) => e,
        Err(e) => {
            return Err(InputError::Dataset {
                dir,
                source_name: source,
                message: format!("the expected digest: {e}"),
            });
        }
    };
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(InputError::DatasetDigest {
            dir,
            source_name: source,
            expected,
            actual: digest,
        });
    }
    Ok(DatasetInput { dir, digest, source })
}

/// The base model folder and how PEFT should name it in `adapter_config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInput {
    pub dir: PathBuf,
    pub peft_name: String,
    pub revision: Option<String>,
}

/// `baseModel.path` relative to the artifact root (or next to the manifest, for local runs), or the Hub
/// snapshot under `<artifacts>/models/huggingface/`.
pub fn base_model(tr: &TrainingRun, artifacts: &Path, base_dir: &Path) -> Result<ModelInput, InputError> {
    let bm = &tr.spec.base_model;
    if let Some(path) = &bm.path {
        let p = Path::new(path);
        let candidates = if p.is_absolute() {
            vec![p.to_owned()]
        } else {
            vec![artifacts.join(p), base_dir.join(p)]
        };
        return match candidates.iter().find(|c| c.join("config.json").is_file()) {
            Some(dir) => Ok(ModelInput {
                dir: dir.clone(),
                peft_name: path.clone(),
                revision: None,
            }),
            None => Err(InputError::ModelPath {
                path: path.clone(),
                tried: candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        };
    }
    let Some(hf) = bm.hugging_face.as_ref() else {
        return Err(InputError::ModelPath {
            path: String::new(),
            tried: "spec.baseModel sets neither path nor huggingFace".into(),
        });
    };
    let dir = hub::download(&hf.repo, &hf.revision, &artifacts.join(layout::hub_cache()))?;
    Ok(ModelInput {
        dir,
        peft_name: hf.repo.clone(),
        revision: Some(hf.revision.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(annotations: &str) -> TrainingRun {
        serde_yaml::from_str(&format!(
            "metadata: {{name: r, namespace: ai{annotations}}}\nspec:\n  baseModel: {{path: m}}\n  datasetRef: {{name: fw}}\n"
        ))
        .unwrap()
    }

    fn build(dir: &Path) -> Digest {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("train.jsonl"), "{}\n").unwrap();
        artifact::folder_digest(dir).unwrap()
    }

    #[test]
    fn the_operator_choice_wins_and_its_digest_is_checked() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("datasets/ai/fw/aaa");
        let b = root.path().join("datasets/ai/fw/bbb");
        let (da, db) = (build(&a), build(&b));
        std::fs::write(b.join("eval.jsonl"), "").unwrap();
        let db2 = artifact::folder_digest(&b).unwrap();
        assert_ne!(db, db2);
        let tr = run(", annotations: {ai.fireweave.io/dataset-uri: datasets/ai/fw/aaa}");
        let none = DatasetHints::default();
        assert_eq!(dataset(&tr, root.path(), &none).unwrap().dir, a);
        let env = DatasetHints {
            env_uri: Some("datasets/ai/fw/bbb".into()),
            env_digest: Some(db2.to_string()),
            ..Default::default()
        };
        let got = dataset(&tr, root.path(), &env).unwrap();
        assert_eq!(
            (got.dir.as_path(), got.digest, got.source),
            (b.as_path(), db2, "FIREWEAVE_DATASET_URI")
        );
        let wrong = DatasetHints {
            env_digest: Some(da.to_string()),
            ..env
        };
        let err = dataset(&tr, root.path(), &wrong).unwrap_err().to_string();
        assert!(
            err.contains("digest is sha256:") && err.contains("FIREWEAVE_DATASET_URI"),
            "{err}"
        );
        let cli = DatasetHints {
            cli: Some(a.clone()),
            ..wrong
        };
        assert_eq!(dataset(&tr, root.path(), &cli).unwrap().source, "--dataset");
    }

    #[test]
    fn newest_build_only_as_a_last_resort() {
        let root = tempfile::tempdir().unwrap();
        let tr = run("");
        let err = dataset(&tr, root.path(), &DatasetHints::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no build with a train.jsonl"), "{err}");
        build(&root.path().join("datasets/ai/fw/old"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        build(&root.path().join("datasets/ai/fw/new"));
        std::fs::create_dir_all(root.path().join("datasets/ai/fw/.tmp-1")).unwrap();
        let got = dataset(&tr, root.path(), &DatasetHints::default()).unwrap();
        assert!(got.dir.ends_with("new"), "{got:?}");
    }
}
