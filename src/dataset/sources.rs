//! Where a source's files are: a path (relative to the manifest locally, or to the artifact root in the
//! cluster), a ConfigMap mounted by the operator, or a URL downloaded once and checked against its sha256.

use super::load::{self, LoadError};
use crate::api::dataset::DatasetSource;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source path {path} does not exist (looked relative to the manifest and to the artifact root)")]
    Missing { path: PathBuf },
    #[error(
        "configMap source {name}: {path} is not mounted (the operator mounts ConfigMaps under $FIREWEAVE_CONFIGMAP_DIR)"
    )]
    ConfigMap { name: String, path: PathBuf },
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },
    #[error("download of {url}: sha256 is {actual}, the spec says {expected}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
}

pub fn resolve(src: &DatasetSource, manifest_dir: &Path, artifacts: &Path) -> Result<Vec<PathBuf>, SourceError> {
    if let Some(p) = &src.path {
        let p = Path::new(p);
        let candidates = if p.is_absolute() {
            vec![p.to_path_buf()]
        } else {
            vec![manifest_dir.join(p), artifacts.join(p), p.to_path_buf()]
        };
        let found = candidates
            .into_iter()
            .find(|c| c.exists())
            .ok_or_else(|| SourceError::Missing { path: p.into() })?;
        return Ok(load::expand(&found)?);
    }
    if let Some(cm) = &src.config_map {
        // The operator's dataset Job mounts each ConfigMap at `$FIREWEAVE_CONFIGMAP_DIR/<name>/`.
        let root = std::env::var_os("FIREWEAVE_CONFIGMAP_DIR")
            .map_or_else(|| PathBuf::from("/etc/fireweave-sources"), PathBuf::from)
            .join(&cm.name);
        let path = match &cm.key {
            Some(k) => root.join(k),
            None => root,
        };
        if !path.exists() {
            return Err(SourceError::ConfigMap {
                name: cm.name.clone(),
                path,
            });
        }
        return Ok(load::expand(&path)?);
    }
    if let (Some(url), Some(sha)) = (&src.url, &src.sha256) {
        return Ok(vec![download(url, sha, &artifacts.join("cache").join("sources"))?]);
    }
    Ok(Vec::new())
}

/// Downloads into the cache once; a cached file is trusted only if its hash still matches.
fn download(url: &str, sha256: &str, cache: &Path) -> Result<PathBuf, SourceError> {
    let expected = sha256.to_ascii_lowercase();
    let ext = if url.ends_with(".json") { "json" } else { "jsonl" };
    let dest = cache.join(format!("{expected}.{ext}"));
    let err = |message: String| SourceError::Download {
        url: url.into(),
        message,
    };
    if dest.exists() {
        let bytes = std::fs::read(&dest).map_err(|e| err(e.to_string()))?;
        if hex::encode(Sha256::digest(&bytes)) == expected {
            return Ok(dest);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(e.to_string()))?;
    let bytes = rt
        .block_on(async {
            let resp = reqwest::get(url).await?.error_for_status()?;
            resp.bytes().await
        })
        .map_err(|e| err(e.to_string()))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != expected {
        return Err(SourceError::Checksum {
            url: url.into(),
            expected,
            actual,
        });
    }
    std::fs::create_dir_all(cache).map_err(|e| err(e.to_string()))?;
    let tmp = dest.with_extension("part");
    std::fs::write(&tmp, &bytes).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, &dest).map_err(|e| err(e.to_string()))?;
    Ok(dest)
}
