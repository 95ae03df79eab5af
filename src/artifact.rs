//! Files on the artifact volume, for every worker, the server and the local pipeline: content digests of
//! files and folders, atomic writes, folders staged under a temporary name and published by a rename, and
//! verification of a digest before anything is loaded.
//!
//! A folder artifact (a dataset build, an adapter, a merged checkpoint) is flat: its digest is sha256 over,
//! for every regular file in byte order of the names, the file name, a NUL byte and the file's raw sha256.
//! Anything else in the folder (a sub-folder, a symlink) is not part of the artifact and is not hashed, so a
//! digest never depends on where a link points.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::contract::Digest;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct IoError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// `map_err(io(path))`: an I/O error that says which file.
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{path}: digest is {actual}, expected {expected} (the file changed or is not the one named)")]
    Mismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
}

/// Feeds a file to `update` in 1 MiB reads (GGUFs and merged shards are gigabytes; never read them whole).
pub fn stream_file(path: &Path, mut update: impl FnMut(&[u8])) -> Result<(), IoError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            return Ok(());
        }
        update(&buf[..n]);
    }
}

/// sha256 of a file.
pub fn file_digest(path: &Path) -> Result<Digest, IoError> {
    let mut h = Sha256::new();
    stream_file(path, |bytes| h.update(bytes))?;
    Ok(Digest::from_hasher(h))
}

/// The regular files of a folder artifact, sorted by name (the order the folder digest uses).
pub fn folder_files(dir: &Path) -> Result<Vec<String>, IoError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if entry.file_type().map_err(io(&entry.path()))?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The folder digest (see the module docs).
pub fn folder_digest(dir: &Path) -> Result<Digest, IoError> {
    let mut h = Sha256::new();
    for name in folder_files(dir)? {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(file_digest(&dir.join(&name))?.as_bytes());
    }
    Ok(Digest::from_hasher(h))
}

/// Checks a file against the digest a status or spec records; returns the actual digest when it matches.
pub fn verify_file(path: &Path, expected: &Digest) -> Result<Digest, VerifyError> {
    matching(path, expected, file_digest(path)?)
}

/// Checks a folder artifact against its recorded digest.
pub fn verify_folder(dir: &Path, expected: &Digest) -> Result<Digest, VerifyError> {
    matching(dir, expected, folder_digest(dir)?)
}

fn matching(path: &Path, expected: &Digest, actual: Digest) -> Result<Digest, VerifyError> {
    if actual != *expected {
        return Err(VerifyError::Mismatch {
            path: path.to_owned(),
            expected: *expected,
            actual,
        });
    }
    Ok(actual)
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so readers never see half a file.
/// Creates the parent folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path)(e)
    })
}

/// A fresh temporary sibling folder of `dest`, named `.tmp-<name>-<pid>`; [`publish`] renames it into place.
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
/// new one (plus, at worst, a stale `.tmp-*` folder that [`remove_stale_staging`] removes).
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

/// Publishes a content-addressed folder: `tmp` becomes `parent/<hex digest>`. When that folder exists already
/// (a rerun that produced the same bytes) it is kept and `tmp` removed. Returns the folder and its digest.
pub fn publish_content_addressed(tmp: &Path, parent: &Path) -> Result<(PathBuf, Digest), IoError> {
    let digest = folder_digest(tmp)?;
    let dest = parent.join(digest.hex());
    if dest.exists() {
        std::fs::remove_dir_all(tmp).map_err(io(tmp))?;
    } else {
        sync_dir(tmp);
        std::fs::rename(tmp, &dest).map_err(io(&dest))?;
        sync_dir(parent);
    }
    Ok((dest, digest))
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
    fn folder_digest_is_over_names_and_file_digests_of_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "2\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "1\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.jsonl"), dir.path().join("link")).unwrap();
        let mut h = Sha256::new();
        for (name, body) in [("a.jsonl", "1\n"), ("b.jsonl", "2\n")] {
            h.update(name);
            h.update([0]);
            h.update(Sha256::digest(body));
        }
        let want = Digest::from_hasher(h);
        assert_eq!(folder_digest(dir.path()).unwrap(), want);
        assert_eq!(verify_folder(dir.path(), &want).unwrap(), want);
        std::fs::write(dir.path().join("a.jsonl"), "changed\n").unwrap();
        assert!(matches!(
            verify_folder(dir.path(), &want),
            Err(VerifyError::Mismatch { .. })
        ));
    }

    #[test]
    fn file_digest_and_verification() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(file_digest(&p).unwrap(), Digest::of(b"abc"));
        let err = verify_file(&p, &Digest::of(b"abd")).unwrap_err().to_string();
        assert!(err.contains("m.gguf") && err.contains("expected sha256:"), "{err}");
        assert!(
            file_digest(&dir.path().join("missing"))
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }

    #[test]
    fn publish_replaces_the_destination_and_content_addressing_reuses() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("adapter");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old"), "x").unwrap();
        let tmp = staging(&dest).unwrap();
        std::fs::write(tmp.join("new"), "y").unwrap();
        publish(&tmp, &dest).unwrap();
        assert!(dest.join("new").exists() && !dest.join("old").exists() && !tmp.exists());

        let parent = root.path().join("builds");
        std::fs::create_dir(&parent).unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let tmp = staging(&parent.join("x")).unwrap();
            std::fs::write(tmp.join("train.jsonl"), "{}\n").unwrap();
            let (dir, digest) = publish_content_addressed(&tmp, &parent).unwrap();
            assert_eq!(dir.file_name().unwrap().to_str().unwrap(), digest.hex());
            assert!(!tmp.exists());
            seen.push(digest);
        }
        assert_eq!(seen[0], seen[1]);
    }

    #[test]
    fn write_atomic_creates_the_folder_and_leaves_no_temp_file() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("a/b/status.yaml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
