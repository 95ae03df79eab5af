//! Base models from the Hugging Face Hub: the files a trainer needs (config, tokenizer, safetensors) of one
//! commit, downloaded into `<artifacts>/models/huggingface/<owner>--<name>/<commit>/`, resumable, verified.
//!
//! The protocol is the Hub's own: `GET /api/models/{repo}/revision/{rev}` resolves the revision to a commit
//! and lists the files; `HEAD /{repo}/resolve/{commit}/{file}` (redirects not followed) gives the file's
//! size and checksum — for LFS files `X-Linked-Etag` is the sha256 of the content and `Location` the storage
//! URL, for small files `ETag` is the git blob id. Bytes go to `.<file>.incomplete` and continue with a
//! `Range` request after a dropped connection or a restarted Pod; a file gets its final name only after its
//! checksum matched, and the folder is marked complete only when every file is there. `HF_TOKEN` is sent as a
//! bearer token to the Hub (never to a storage host on another domain); `HF_ENDPOINT` points elsewhere (a
//! mirror, or the tests' local server).

use sha1::Sha1;
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const COMPLETE_MARKER: &str = ".complete";
/// Attempts per file before giving up (each continues where the previous one stopped).
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// `at` is `repo@commit`: one field instead of two keeps the error (and every `Result` carrying it) small.
    #[error("{at}: {file}: {algorithm} {actual} does not match the Hub's {expected}")]
    Checksum {
        at: String,
        file: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{repo}@{revision}: {message}")]
    Repo {
        repo: String,
        revision: String,
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Files of a model repository the trainer and the exports use; everything else (original/*.pth, ONNX,
/// GGUF, READMEs) stays on the Hub.
pub fn wanted(file: &str) -> bool {
    !file.contains('/')
        && (file.ends_with(".safetensors")
            || matches!(
                file,
                "config.json"
                    | "generation_config.json"
                    | "tokenizer.json"
                    | "tokenizer_config.json"
                    | "special_tokens_map.json"
                    | "chat_template.jinja"
                    | "model.safetensors.index.json"
            ))
}

/// What the Hub says about one file before we fetch it.
#[derive(Clone, Debug, PartialEq)]
pub struct Remote {
    /// Where the bytes are (the storage URL for LFS files).
    pub url: String,
    pub size: Option<u64>,
    pub checksum: Checksum,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// LFS files: sha256 of the content.
    Sha256(String),
    /// Files stored in git: sha1 of `blob <len>\0<content>`.
    GitBlob(String),
    None,
}

/// The checksum an ETag names: 64 hex digits are an LFS sha256, 40 a git blob id.
pub fn checksum_of_etag(etag: &str) -> Checksum {
    let e = etag
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase();
    let hex = e.bytes().all(|b| b.is_ascii_hexdigit());
    match e.len() {
        64 if hex => Checksum::Sha256(e),
        40 if hex => Checksum::GitBlob(e),
        _ => Checksum::None,
    }
}

pub struct Hub {
    endpoint: String,
    token: Option<String>,
    /// Does not follow redirects: the redirect of `resolve` carries the checksum headers.
    api: reqwest::Client,
    /// Follows redirects (storage hosts may redirect again).
    data: reqwest::Client,
}

impl Hub {
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, HubError> {
        let build = |policy| {
            reqwest::Client::builder()
                .redirect(policy)
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .user_agent(concat!("fireweave-ai/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|source| HubError::Http {
                    url: endpoint.to_owned(),
                    source,
                })
        };
        Ok(Hub {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.trim().is_empty()),
            api: build(reqwest::redirect::Policy::none())?,
            data: build(reqwest::redirect::Policy::limited(5))?,
        })
    }

    /// From the environment: `HF_ENDPOINT` (default the public Hub) and `HF_TOKEN`.
    pub fn from_env() -> Result<Self, HubError> {
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned());
        Self::new(&endpoint, std::env::var("HF_TOKEN").ok())
    }

    fn authorized(&self, req: reqwest::RequestBuilder, url: &str) -> reqwest::RequestBuilder {
        match &self.token {
            // The token is for the Hub only: a storage URL on another host must not receive it.
            Some(t) if same_host(url, &self.endpoint) => req.bearer_auth(t),
            _ => req,
        }
    }

    /// Resolves `revision` to a commit and lists the repository's files.
    pub async fn revision(&self, repo: &str, revision: &str) -> Result<(String, Vec<String>), HubError> {
        let url = format!("{}/api/models/{repo}/revision/{revision}", self.endpoint);
        let resp = self
            .authorized(self.api.get(&url), &url)
            .send()
            .await
            .map_err(|source| HubError::Http {
                url: url.clone(),
                source,
            })?;
        check_status(&url, &resp)?;
        let info: serde_json::Value = resp.json().await.map_err(|source| HubError::Http {
            url: url.clone(),
            source,
        })?;
        let commit = info["sha"].as_str().ok_or_else(|| HubError::Protocol {
            url: url.clone(),
            message: "no \"sha\" in the answer".into(),
        })?;
        let files = info["siblings"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|f| f["rfilename"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok((commit.to_owned(), files))
    }

    /// Size, checksum and storage URL of one file of `commit`.
    pub async fn remote(&self, repo: &str, commit: &str, file: &str) -> Result<Remote, HubError> {
        let url = format!("{}/{repo}/resolve/{commit}/{file}", self.endpoint);
        let resp = self
            .authorized(self.api.head(&url), &url)
            .send()
            .await
            .map_err(|source| HubError::Http {
                url: url.clone(),
                source,
            })?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if resp.status().is_redirection() {
            let location = header("location").ok_or_else(|| HubError::Protocol {
                url: url.clone(),
                message: format!("HTTP {} without a Location", resp.status()),
            })?;
            let target = resp.url().join(&location).map_err(|e| HubError::Protocol {
                url: url.clone(),
                message: format!("bad Location {location:?}: {e}"),
            })?;
            let etag = header("x-linked-etag").or_else(|| header("etag")).unwrap_or_default();
            return Ok(Remote {
                url: target.to_string(),
                size: header("x-linked-size").and_then(|s| s.parse().ok()),
                checksum: checksum_of_etag(&etag),
            });
        }
        check_status(&url, &resp)?;
        Ok(Remote {
            size: header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|s| s.parse().ok()),
            checksum: checksum_of_etag(&header("x-linked-etag").or_else(|| header("etag")).unwrap_or_default()),
            url,
        })
    }

    /// Downloads `remote` to `dest`, continuing a `.incomplete` file left by an earlier attempt.
    pub async fn fetch(&self, remote: &Remote, dest: &Path, label: (&str, &str, &str)) -> Result<(), HubError> {
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let partial = dest.with_file_name(format!(".{name}.incomplete"));
        let mut last_error = None;
        for attempt in 0..ATTEMPTS {
            match self.fetch_once(remote, &partial).await {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                // Network trouble: try again from where the bytes stopped.
                Err(e @ HubError::Http { .. }) => {
                    tracing::warn!(file = name, attempt, error = %e, "download interrupted; resuming");
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = last_error {
            return Err(e);
        }
        let len = std::fs::metadata(&partial).map_err(io(&partial))?.len();
        if let Some(size) = remote.size.filter(|&s| s != len) {
            let _ = std::fs::remove_file(&partial);
            return Err(HubError::Protocol {
                url: remote.url.clone(),
                message: format!("{name}: got {len} bytes, the Hub announced {size}"),
            });
        }
        let (repo, commit, file) = label;
        let mismatch = |algorithm, expected: &str, actual: String| HubError::Checksum {
            at: format!("{repo}@{commit}"),
            file: file.to_owned(),
            algorithm,
            expected: expected.to_owned(),
            actual,
        };
        match &remote.checksum {
            Checksum::Sha256(want) => {
                let got = crate::artifact::file_digest(&partial)
                    .map_err(|e| io(&partial)(e.source))?
                    .hex();
                if &got != want {
                    // A corrupt partial must not be resumed again.
                    let _ = std::fs::remove_file(&partial);
                    return Err(mismatch("sha256", want, got));
                }
            }
            Checksum::GitBlob(want) => {
                let got = git_blob_sha1(&partial, len)?;
                if &got != want {
                    let _ = std::fs::remove_file(&partial);
                    return Err(mismatch("git blob sha1", want, got));
                }
            }
            Checksum::None => tracing::warn!(file = name, "the Hub gave no checksum for this file; not verified"),
        }
        std::fs::rename(&partial, dest).map_err(io(dest))
    }

    async fn fetch_once(&self, remote: &Remote, partial: &Path) -> Result<(), HubError> {
        let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if remote.size.is_some_and(|s| have == s) {
            return Ok(());
        }
        let url = &remote.url;
        let mut req = self.authorized(self.data.get(url), url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().await.map_err(|source| HubError::Http {
            url: url.clone(),
            source,
        })?;
        let append = match resp.status().as_u16() {
            206 => true,
            // The server ignored the range: start over.
            200 => false,
            // Nothing past what we have: the partial is already whole (checked by size and checksum next).
            416 => return Ok(()),
            _ => {
                check_status(url, &resp)?;
                false
            }
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .map_err(io(partial))?;
        while let Some(chunk) = resp.chunk().await.map_err(|source| HubError::Http {
            url: url.clone(),
            source,
        })? {
            file.write_all(&chunk).map_err(io(partial))?;
        }
        file.sync_all().map_err(io(partial))
    }

    /// The model folder of `repo` at `revision`, downloading what is missing. A folder already marked
    /// complete for a pinned commit is used without asking the Hub; for a branch or tag, the last commit it
    /// resolved to is used when the Hub cannot be reached.
    pub async fn snapshot(&self, repo: &str, revision: &str, cache: &Path) -> Result<PathBuf, HubError> {
        let root = cache.join(repo.replace('/', "--"));
        let pinned = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
        if pinned && root.join(revision).join(COMPLETE_MARKER).is_file() {
            return Ok(root.join(revision));
        }
        let ref_file = root.join("refs").join(revision.replace('/', "--"));
        let (commit, files) = match self.revision(repo, revision).await {
            Ok(r) => r,
            Err(e @ HubError::Http { .. }) => {
                let cached = std::fs::read_to_string(&ref_file).ok().map(|c| c.trim().to_owned());
                match cached.filter(|c| root.join(c).join(COMPLETE_MARKER).is_file()) {
                    Some(c) => {
                        tracing::warn!(%repo, %revision, commit = %c, error = %e, "Hub unreachable; using the cached snapshot");
                        return Ok(root.join(c));
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let dir = root.join(&commit);
        if !dir.join(COMPLETE_MARKER).is_file() {
            let wanted: Vec<&String> = files.iter().filter(|f| wanted(f)).collect();
            let repo_error = |message: &str| HubError::Repo {
                repo: repo.to_owned(),
                revision: revision.to_owned(),
                message: message.to_owned(),
            };
            if !wanted.iter().any(|f| f.ends_with(".safetensors")) {
                return Err(repo_error("no *.safetensors weights in the repository"));
            }
            if !wanted.iter().any(|f| *f == "config.json") {
                return Err(repo_error("no config.json in the repository"));
            }
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            for file in wanted {
                let dest = dir.join(file);
                if dest.is_file() {
                    continue; // verified before it got its name
                }
                let remote = self.remote(repo, &commit, file).await?;
                tracing::info!(%repo, %commit, file = %file, bytes = remote.size, "downloading");
                self.fetch(&remote, &dest, (repo, &commit, file)).await?;
            }
            std::fs::write(dir.join(COMPLETE_MARKER), format!("{repo}@{commit}\n")).map_err(io(&dir))?;
        }
        if let Some(parent) = ref_file.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&ref_file, format!("{commit}\n")).map_err(io(&ref_file))?;
        Ok(dir)
    }
}

fn same_host(url: &str, endpoint: &str) -> bool {
    match (reqwest::Url::parse(url), reqwest::Url::parse(endpoint)) {
        (Ok(a), Ok(b)) => a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default(),
        _ => false,
    }
}

fn check_status(url: &str, resp: &reqwest::Response) -> Result<(), HubError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let hint = match status.as_u16() {
        401 | 403 => {
            ": gated or private repository — set HF_TOKEN (spec.baseModel.huggingFace.tokenSecretRef) to a token with access"
        }
        404 => ": no such repository, revision or file",
        429 => ": rate limited by the Hub",
        _ => "",
    };
    Err(HubError::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        hint,
    })
}

/// Git's blob id of a file: sha1 over the `blob <len>\0` header and the bytes (the Hub's checksum for
/// small, non-LFS files; sha256 ones go through `crate::artifact`).
fn git_blob_sha1(path: &Path, len: u64) -> Result<String, HubError> {
    let mut h = Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    crate::artifact::stream_file(path, |bytes| h.update(bytes)).map_err(|e| io(path)(e.source))?;
    Ok(hex::encode(h.finalize()))
}

/// Blocking entry point for the trainer: the snapshot folder of `repo@revision` under `cache`.
pub fn download(repo: &str, revision: &str, cache: &Path) -> Result<PathBuf, HubError> {
    let hub = Hub::from_env()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io(cache))?;
    runtime.block_on(hub.snapshot(repo, revision, cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_name_their_checksum() {
        let sha = "a".repeat(64);
        assert_eq!(checksum_of_etag(&format!("\"{sha}\"")), Checksum::Sha256(sha.clone()));
        assert_eq!(
            checksum_of_etag(&format!("W/\"{}\"", "B".repeat(40))),
            Checksum::GitBlob("b".repeat(40))
        );
        assert_eq!(checksum_of_etag("\"xyz\""), Checksum::None);
    }

    #[test]
    fn only_model_files_are_fetched() {
        for f in [
            "config.json",
            "model-00001-of-00004.safetensors",
            "tokenizer.json",
            "chat_template.jinja",
        ] {
            assert!(wanted(f), "{f}");
        }
        for f in [
            "original/consolidated.00.pth",
            "README.md",
            "original/params.json",
            "model.gguf",
        ] {
            assert!(!wanted(f), "{f}");
        }
    }

    #[test]
    fn the_token_stays_on_the_hub() {
        assert!(same_host(
            "https://huggingface.co/a/b/resolve/x/config.json",
            "https://huggingface.co"
        ));
        assert!(!same_host("https://cdn-lfs.hf.co/repos/x", "https://huggingface.co"));
        assert!(!same_host("http://127.0.0.1:81/x", "http://127.0.0.1:80"));
    }
}
