//! Base-model download against a local server that answers the way the Hugging Face Hub does: revision
//! API, `resolve` with a redirect to a storage host on another origin carrying `X-Linked-Etag`/`X-Linked-Size`,
//! byte ranges, gated access. Covers resuming (a connection dropped mid-file, and a partial file left by an
//! earlier process), checksum verification, the token staying on the Hub, and the cache.
#![cfg(feature = "train")]

#[path = "train_support/mod.rs"]
mod support;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fireweave_ai::train::hub::{Hub, HubError};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "hf_test_token";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Clone, Debug)]
struct Seen {
    host: &'static str,
    method: String,
    path: String,
    range: Option<String>,
    authorized: bool,
}

#[derive(Default)]
struct Repo {
    files: BTreeMap<String, Vec<u8>>,
    /// Files whose bytes the storage host corrupts (the announced checksum stays the original's).
    corrupt: Vec<String>,
    /// Files whose first storage response stops half-way.
    drop_once: Vec<String>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Repo>>;

fn lfs(name: &str) -> bool {
    name.ends_with(".safetensors")
}

fn record(state: &Shared, host: &'static str, method: &Method, path: &str, headers: &HeaderMap) {
    state.lock().unwrap().seen.push(Seen {
        host,
        method: method.to_string(),
        path: path.to_owned(),
        range: headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        authorized: headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}")),
    });
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn revision(
    State((state, _)): State<(Shared, String)>,
    UrlPath((owner, name, rev)): UrlPath<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    record(
        &state,
        "hub",
        &method,
        &format!("/api/models/{owner}/{name}/revision/{rev}"),
        &headers,
    );
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "gated").into_response();
    }
    if (owner.as_str(), name.as_str()) != ("meta-llama", "tiny") || !(rev == "main" || rev == COMMIT) {
        return (StatusCode::NOT_FOUND, "no such repo").into_response();
    }
    let siblings: Vec<serde_json::Value> = state
        .lock()
        .unwrap()
        .files
        .keys()
        .map(|f| serde_json::json!({"rfilename": f}))
        .collect();
    axum::Json(serde_json::json!({"id": "meta-llama/tiny", "sha": COMMIT, "siblings": siblings})).into_response()
}

async fn resolve(
    State((state, cdn)): State<(Shared, String)>,
    UrlPath((owner, name, rev, file)): UrlPath<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    record(
        &state,
        "hub",
        &method,
        &format!("/{owner}/{name}/resolve/{rev}/{file}"),
        &headers,
    );
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "gated").into_response();
    }
    let Some(bytes) = state.lock().unwrap().files.get(&file).cloned() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    if lfs(&file) {
        // As the Hub: LFS content lives on a storage host; the redirect carries its sha256 and size.
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("{cdn}/blobs/{file}?signature=x"))
            .header("x-linked-etag", format!("\"{}\"", hex::encode(Sha256::digest(&bytes))))
            .header("x-linked-size", bytes.len().to_string())
            .header("x-repo-commit", COMMIT)
            .body(Body::empty())
            .unwrap();
    }
    let mut blob = Sha1::new();
    blob.update(format!("blob {}\0", bytes.len()));
    blob.update(&bytes);
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes.clone())
    };
    Response::builder()
        .header(header::ETAG, format!("\"{}\"", hex::encode(blob.finalize())))
        .header(header::CONTENT_LENGTH, bytes.len().to_string())
        .header("x-repo-commit", COMMIT)
        .body(body)
        .unwrap()
}

async fn blob(
    State((state, _)): State<(Shared, String)>,
    UrlPath(file): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    record(&state, "cdn", &method, &format!("/blobs/{file}"), &headers);
    let (mut bytes, drop) = {
        let mut s = state.lock().unwrap();
        let Some(b) = s.files.get(&file).cloned() else {
            return (StatusCode::NOT_FOUND, "").into_response();
        };
        let drop = s.drop_once.contains(&file);
        s.drop_once.retain(|f| f != &file);
        let mut b = b;
        if s.corrupt.contains(&file) {
            let mid = b.len() / 2;
            b[mid] ^= 0xFF;
        }
        (b, drop)
    };
    let total = bytes.len();
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let mut builder = Response::builder();
    if let Some(start) = start {
        if start >= total {
            return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        }
        builder = builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{}/{total}", total - 1));
        bytes.drain(..start);
    }
    let len = bytes.len();
    let body = if drop {
        // Half the bytes, then the connection breaks (Content-Length promised more).
        let half = Bytes::from(bytes[..len / 2].to_vec());
        let stream = futures::stream::iter(vec![
            Ok::<Bytes, std::io::Error>(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "storage host went away",
            )),
        ]);
        Body::from_stream(stream)
    } else {
        Body::from(bytes)
    };
    builder
        .header(header::CONTENT_LENGTH, len.to_string())
        .body(body)
        .unwrap()
}

/// Starts the storage host and the Hub (two origins); returns the Hub's URL.
async fn serve(state: Shared) -> String {
    let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cdn = format!("http://{}", cdn_listener.local_addr().unwrap());
    let cdn_app = axum::Router::new()
        .route("/blobs/{file}", axum::routing::get(blob))
        .with_state((state.clone(), cdn.clone()));
    tokio::spawn(async move { axum::serve(cdn_listener, cdn_app).await.unwrap() });
    let hub_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub = format!("http://{}", hub_listener.local_addr().unwrap());
    let hub_app = axum::Router::new()
        .route(
            "/api/models/{owner}/{name}/revision/{rev}",
            axum::routing::get(revision),
        )
        .route(
            "/{owner}/{name}/resolve/{rev}/{*file}",
            axum::routing::get(resolve).head(resolve),
        )
        .with_state((state, cdn));
    tokio::spawn(async move { axum::serve(hub_listener, hub_app).await.unwrap() });
    hub
}

/// The tiny Llama fixture as a Hub repository, plus files a trainer must not fetch.
fn repo_from_fixture() -> Repo {
    let dir = support::fixture("tiny-llama31");
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            files.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    assert!(
        files.keys().filter(|f| lfs(f)).count() >= 2,
        "the fixture has sharded safetensors"
    );
    files.insert("README.md".into(), b"# tiny\n".to_vec());
    files.insert("original/consolidated.00.pth".into(), vec![7; 4096]);
    Repo {
        files,
        ..Default::default()
    }
}

fn same_files(dir: &Path, repo: &Repo) {
    for (name, bytes) in &repo.files {
        let got = std::fs::read(dir.join(name));
        if !fireweave_ai::train::hub::wanted(name) {
            assert!(got.is_err(), "{name} was downloaded but the trainer does not need it");
        } else {
            assert!(got.unwrap() == *bytes, "{name} differs from the repository's");
        }
    }
}

#[tokio::test]
async fn downloads_resume_verify_and_cache() {
    let mut repo = repo_from_fixture();
    let shards: Vec<String> = repo.files.keys().filter(|f| lfs(f)).cloned().collect();
    repo.drop_once = vec![shards[0].clone()];
    let expected = repo_from_fixture();
    let state = Arc::new(Mutex::new(repo));
    let hub_url = serve(state.clone()).await;
    let cache = tempfile::tempdir().unwrap();

    // A partial file from an earlier, killed process: the download must continue after its bytes.
    let dir = cache.path().join("meta-llama--tiny").join(COMMIT);
    std::fs::create_dir_all(&dir).unwrap();
    let partial_len = 1000;
    std::fs::write(
        dir.join(format!(".{}.incomplete", shards[1])),
        &expected.files[&shards[1]][..partial_len],
    )
    .unwrap();

    let hub = Hub::new(&hub_url, Some(TOKEN.into())).unwrap();
    let got = hub.snapshot("meta-llama/tiny", "main", cache.path()).await.unwrap();
    assert_eq!(got, dir);
    same_files(&dir, &expected);
    assert!(dir.join(".complete").is_file());
    assert_eq!(
        std::fs::read_to_string(cache.path().join("meta-llama--tiny/refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    fireweave_ai::hf::Checkpoint::open(&dir).expect("the downloaded folder is a loadable checkpoint");

    let seen = state.lock().unwrap().seen.clone();
    let cdn_gets = |file: &str| -> Vec<Seen> {
        seen.iter()
            .filter(|s| s.host == "cdn" && s.path.ends_with(file))
            .cloned()
            .collect()
    };
    let dropped = cdn_gets(&shards[0]);
    assert_eq!(dropped.len(), 2, "one broken transfer, one resumed: {dropped:?}");
    assert_eq!(dropped[0].range, None);
    let resumed_at = dropped[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'));
    let resumed_at: usize = resumed_at.expect("second request asks for a range").parse().unwrap();
    assert!(
        resumed_at > 0,
        "the resumed request starts after the bytes already received"
    );
    assert_eq!(
        cdn_gets(&shards[1])[0].range.as_deref(),
        Some(format!("bytes={partial_len}-").as_str())
    );
    assert!(
        seen.iter().filter(|s| s.host == "cdn").all(|s| !s.authorized),
        "the token was sent to the storage host"
    );
    assert!(seen.iter().filter(|s| s.host == "hub").all(|s| s.authorized));
    assert!(
        !seen
            .iter()
            .any(|s| s.path.contains("README") || s.path.contains("original/"))
    );

    // Cached: a branch asks the Hub which commit it is and downloads nothing; a pinned commit asks nothing.
    let before = state.lock().unwrap().seen.len();
    hub.snapshot("meta-llama/tiny", "main", cache.path()).await.unwrap();
    let after: Vec<Seen> = state.lock().unwrap().seen[before..].to_vec();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].method == "GET" && after[0].path.starts_with("/api/models/"));
    hub.snapshot("meta-llama/tiny", COMMIT, cache.path()).await.unwrap();
    assert_eq!(state.lock().unwrap().seen.len(), before + 1);
}

#[tokio::test]
async fn a_corrupt_file_is_rejected_and_not_kept() {
    let mut repo = repo_from_fixture();
    let shard = repo.files.keys().find(|f| lfs(f)).cloned().unwrap();
    repo.corrupt = vec![shard.clone()];
    let hub_url = serve(Arc::new(Mutex::new(repo))).await;
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(&hub_url, Some(TOKEN.into())).unwrap();
    let err = hub.snapshot("meta-llama/tiny", "main", cache.path()).await.unwrap_err();
    assert!(
        matches!(&err, HubError::Checksum { file, algorithm: "sha256", .. } if *file == shard),
        "{err}"
    );
    assert!(err.to_string().contains(&shard));
    let dir = cache.path().join("meta-llama--tiny").join(COMMIT);
    assert!(!dir.join(&shard).exists(), "a corrupt file got its final name");
    assert!(
        !dir.join(format!(".{shard}.incomplete")).exists(),
        "a corrupt partial would be resumed"
    );
    assert!(!dir.join(".complete").exists());
}

#[tokio::test]
async fn gated_repositories_ask_for_a_token() {
    let hub_url = serve(Arc::new(Mutex::new(repo_from_fixture()))).await;
    let cache = tempfile::tempdir().unwrap();
    let err = Hub::new(&hub_url, None)
        .unwrap()
        .snapshot("meta-llama/tiny", "main", cache.path())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("401") && err.to_string().contains("HF_TOKEN"),
        "{err}"
    );
    let err = Hub::new(&hub_url, Some(TOKEN.into()))
        .unwrap()
        .snapshot("meta-llama/other", "main", cache.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}
