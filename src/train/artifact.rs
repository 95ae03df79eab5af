//! Files on the artifact volume: digests, atomic writes, folders staged under a temporary name.
//!
//! A folder artifact's digest is the one the dataset step records: sha256 over, for every file in name
//! order, the file name, a NUL byte and the file's raw sha256. Status fields carry it as `sha256:<hex>`.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct IoError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError {
        path: path.to_owned(),
        source,
    }
}

/// sha256 of a file, streamed (merged shards are gigabytes).
pub fn sha256_file(path: &Path) -> Result<[u8; 32], IoError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The folder digest (see the module docs), as bare hex. Sub-folders are not part of an artifact.
pub fn folder_digest(dir: &Path) -> Result<String, IoError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(sha256_file(&dir.join(&name))?);
    }
    Ok(hex::encode(h.finalize()))
}

/// Whether `digest` (`sha256:<hex>` or bare hex, any case) names `hex`.
pub fn digest_matches(digest: &str, hex: &str) -> bool {
    digest.trim().trim_start_matches("sha256:").eq_ignore_ascii_case(hex)
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A fresh temporary sibling folder of `dest`; [`publish`] renames it into place.
pub fn staging(dest: &Path) -> Result<PathBuf, IoError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    Ok(tmp)
}

/// Flushes every file of `tmp`, then replaces `dest` with it. A crash leaves either the old `dest` or the
/// new one (plus, at worst, a stale `.tmp-*` folder the next run removes).
pub fn publish(tmp: &Path, dest: &Path) -> Result<(), IoError> {
    sync_dir(tmp);
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(io(dest))?;
    }
    std::fs::rename(tmp, dest).map_err(io(dest))?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Best effort: data reaches the disk before a rename makes it visible.
fn sync_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file())
                && let Ok(f) = std::fs::File::open(e.path())
            {
                let _ = f.sync_all();
            }
        }
    }
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Removes `.tmp-*` folders a killed process left in `dir`.
pub fn remove_stale_staging(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_digest_is_over_names_and_file_digests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "2\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "1\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut h = Sha256::new();
        for (name, body) in [("a.jsonl", "1\n"), ("b.jsonl", "2\n")] {
            h.update(name);
            h.update([0]);
            h.update(Sha256::digest(body));
        }
        let want = hex::encode(h.finalize());
        let got = folder_digest(dir.path()).unwrap();
        assert_eq!(got, want);
        assert!(digest_matches(&format!("sha256:{}", want.to_uppercase()), &got));
        assert!(!digest_matches("sha256:00", &got));
    }

    #[test]
    fn publish_replaces_the_destination() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("adapter");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old"), "x").unwrap();
        let tmp = staging(&dest).unwrap();
        std::fs::write(tmp.join("new"), "y").unwrap();
        publish(&tmp, &dest).unwrap();
        assert!(dest.join("new").exists() && !dest.join("old").exists() && !tmp.exists());
    }
}
