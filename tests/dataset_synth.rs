//! Synthesis against our own HTTP server on 127.0.0.1 speaking each provider's API (real HTTP, real JSON):
//! the three request shapes, the tokens-per-minute budget, 429 retries, resuming after a crash without
//! duplicates, malformed model output rejected with a reason, and the API key kept out of messages.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fireweave_ai::api::dataset::{Synthesis, SynthesisProvider, SynthesisTopic, default_tools};
use fireweave_ai::dataset::curate::{self, Config, Fate};
use fireweave_ai::dataset::load::Item;
use fireweave_ai::dataset::reason::Reason;
use fireweave_ai::dataset::synth::{self, ApiKey, Tuning};
use fireweave_ai::dataset::validate::Rules;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
enum Reply {
    Status(u16, Option<&'static str>),
    Text(String),
    /// A valid batch (the default when the script is empty).
    Examples,
}

#[derive(Default)]
struct Log {
    script: VecDeque<Reply>,
    /// After this many answered requests every request fails with 500 (a provider outage).
    fail_after: Option<usize>,
    tokens_per_reply: u64,
    requests: Vec<(Instant, String, Value, HeaderMap)>,
    served: usize,
    /// Numbering of generated examples starts here, so a second server does not repeat the first one's.
    first_example: usize,
}

type Shared = Arc<Mutex<Log>>;

/// Examples with distinct facts (ports) per request, so dedup keeps them all.
fn examples(k: usize) -> String {
    let ex: Vec<Value> = (0..2)
        .map(|j| {
            let port = 20000 + k * 10 + j;
            json!({"question": format!("How do I allow the monitoring agent on TCP port {port} through a Palo Alto firewall?"),
                   "answer": format!("Create a security rule from the `monitoring` zone to the `servers` zone that allows TCP {port}:\n\n```\nset rulebase security rules mon-{port} from monitoring to servers source 10.60.0.20 destination 10.30.0.0/16 service tcp-{port} action allow\ncommit\n```\n\n1. Create the service object `tcp-{port}` first.\n2. Enable logging at session end.\n3. Verify with `test security-policy-match` and the traffic log.")})
        })
        .collect();
    json!({"examples": ex}).to_string()
}

fn wrap(path: &str, content: &str, tokens: u64) -> Value {
    match path {
        "/v1/chat/completions" => json!({"choices": [{"message": {"role": "assistant", "content": content}}],
                                          "usage": {"total_tokens": tokens}}),
        "/v1/messages" => json!({"content": [{"type": "text", "text": content}],
                                  "usage": {"input_tokens": tokens / 2, "output_tokens": tokens - tokens / 2}}),
        _ => json!({"message": {"role": "assistant", "content": content}, "done": true,
                    "prompt_eval_count": tokens / 2, "eval_count": tokens - tokens / 2}),
    }
}

async fn handle(State(s): State<Shared>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> Response {
    let path = uri.path().to_string();
    let mut log = s.lock().expect("lock");
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    log.requests.push((Instant::now(), path.clone(), body, headers));
    if log.fail_after.is_some_and(|n| log.served >= n) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "outage").into_response();
    }
    let reply = log.script.pop_front().unwrap_or(Reply::Examples);
    match reply {
        Reply::Status(code, retry_after) => {
            let mut r = (StatusCode::from_u16(code).expect("status"), "slow down").into_response();
            if let Some(v) = retry_after {
                r.headers_mut().insert("retry-after", v.parse().expect("header"));
            }
            r
        }
        Reply::Text(t) => {
            log.served += 1;
            axum::Json(wrap(&path, &t, log.tokens_per_reply)).into_response()
        }
        Reply::Examples => {
            let k = log.first_example + log.served;
            log.served += 1;
            axum::Json(wrap(&path, &examples(k), log.tokens_per_reply)).into_response()
        }
    }
}

async fn serve(log: Log) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(log));
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .route("/v1/messages", post(handle))
        .route("/api/chat", post(handle))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), shared)
}

fn spec(provider: SynthesisProvider, endpoint: &str, topics: &[(&str, u32)]) -> Synthesis {
    Synthesis {
        provider,
        endpoint: Some(match provider {
            SynthesisProvider::Openai => format!("{endpoint}/v1"),
            _ => endpoint.to_string(),
        }),
        model: "teacher-1".into(),
        api_key_secret_ref: None,
        topics: topics
            .iter()
            .map(|(n, c)| SynthesisTopic {
                name: n.to_string(),
                count: *c,
                instructions: Some("Be concrete.".into()),
            })
            .collect(),
        tokens_per_minute: 1_000_000,
        batch_size: 2,
        max_tokens: 100,
    }
}

fn fast() -> Tuning {
    Tuning {
        window: Duration::from_secs(60),
        backoff: Duration::from_millis(10),
        max_attempts: 3,
        timeout: Duration::from_secs(10),
    }
}

fn curate_all(items: &[Item]) -> curate::Outcome {
    let cfg = Config {
        rules: Rules {
            min_answer_chars: 40,
            reject_placeholders: true,
            tools: default_tools(),
        },
        min_score: 50,
        exact: true,
        near: 0.8,
        eval_fraction: 0.1,
        seed: 42,
    };
    let out = curate::curate(items, &cfg).expect("invariant holds");
    let s = &out.stats;
    assert_eq!(s.input, s.kept + s.rejected + s.duplicates);
    out
}

const KEY: &str = "sk-test-5f1c0e9a-never-print-me";

#[tokio::test]
async fn each_provider_api_is_spoken_and_records_are_curated() {
    for (provider, path) in [
        (SynthesisProvider::Openai, "/v1/chat/completions"),
        (SynthesisProvider::Anthropic, "/v1/messages"),
        (SynthesisProvider::Ollama, "/api/chat"),
    ] {
        let (url, log) = serve(Log {
            tokens_per_reply: 50,
            ..Default::default()
        })
        .await;
        let cache = tempfile::tempdir().expect("tempdir");
        let s = spec(provider, &url, &[("palo-alto", 4), ("fireweave-function-calling", 2)]);
        let items = synth::synthesize(&s, &default_tools(), cache.path(), Some(ApiKey::new(KEY)), &fast())
            .await
            .expect("synthesis succeeds");
        assert_eq!(items.len(), 6, "{provider:?}: 3 batches of 2");
        let log = log.lock().expect("lock");
        assert_eq!(log.requests.len(), 3);
        for (_, p, body, headers) in &log.requests {
            assert_eq!(p, path);
            assert_eq!(body["model"], "teacher-1");
            match provider {
                SynthesisProvider::Openai => {
                    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
                    assert_eq!(body["messages"][0]["role"], "system");
                }
                SynthesisProvider::Anthropic => {
                    assert_eq!(headers["x-api-key"], KEY);
                    assert!(headers.contains_key("anthropic-version"));
                    assert!(body["system"].is_string() && body["messages"][0]["role"] == "user");
                }
                SynthesisProvider::Ollama => assert_eq!(body["stream"], false),
            }
        }
        let prompt = log.requests[2].2.to_string();
        assert!(
            prompt.contains("check_traffic_flow"),
            "function-calling prompts carry the tools"
        );
        let out = curate_all(&items);
        assert_eq!(out.stats.kept, 6, "{:?}", out.stats);
        assert!(items.iter().all(|i| i.parsed.as_ref().is_ok_and(|c| c.topic.is_some())));
    }
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let script = VecDeque::from([Reply::Status(429, Some("0")), Reply::Status(503, None)]);
    let (url, log) = serve(Log {
        script,
        tokens_per_reply: 50,
        ..Default::default()
    })
    .await;
    let cache = tempfile::tempdir().expect("tempdir");
    let items = synth::synthesize(
        &spec(SynthesisProvider::Openai, &url, &[("dns", 2)]),
        &[],
        cache.path(),
        None,
        &fast(),
    )
    .await
    .expect("retries succeed");
    assert_eq!(items.len(), 2);
    assert_eq!(log.lock().expect("lock").requests.len(), 3, "429, 503, then success");
}

#[tokio::test]
async fn the_tokens_per_minute_budget_holds() {
    // Budget 1,000 tokens per 1 s window; every call really uses 400 (reported usage).
    let (url, log) = serve(Log {
        tokens_per_reply: 400,
        ..Default::default()
    })
    .await;
    let cache = tempfile::tempdir().expect("tempdir");
    let mut s = spec(SynthesisProvider::Openai, &url, &[("aws", 12)]);
    s.tokens_per_minute = 1000;
    let tuning = Tuning {
        window: Duration::from_secs(1),
        ..fast()
    };
    let started = Instant::now();
    let items = synth::synthesize(&s, &[], cache.path(), None, &tuning)
        .await
        .expect("runs");
    assert_eq!(items.len(), 12);
    let log = log.lock().expect("lock");
    let times: Vec<Instant> = log.requests.iter().map(|r| r.0).collect();
    assert_eq!(times.len(), 6);
    // In any window (less a margin for scheduling jitter) at most 2 requests × 400 tokens fit in 1,000.
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .filter(|u| u.duration_since(*t) < Duration::from_millis(950))
            .count();
        assert!(
            in_window as u64 * 400 <= 1000,
            "request {i}: {in_window} requests within one window"
        );
    }
    // 2,400 tokens at 1,000 per window cannot be done in less than two windows.
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_crash_mid_run_resumes_without_regenerating_or_duplicating() {
    let cache = tempfile::tempdir().expect("tempdir");
    let s0 = |url: &str| {
        spec(
            SynthesisProvider::Anthropic,
            url,
            &[("azure-security", 4), ("zero-trust", 4)],
        )
    };
    // The provider dies after two answered batches; the run fails.
    let (url, first) = serve(Log {
        fail_after: Some(2),
        tokens_per_reply: 50,
        ..Default::default()
    })
    .await;
    let err = synth::synthesize(&s0(&url), &[], cache.path(), Some(ApiKey::new(KEY)), &fast())
        .await
        .expect_err("the outage fails the run");
    let msg = err.to_string();
    assert!(
        msg.contains("500") && msg.contains("batch 0") && msg.contains("zero-trust"),
        "{msg}"
    );
    assert!(
        !msg.contains(KEY) && !format!("{err:?}").contains(KEY),
        "the key never appears"
    );
    assert_eq!(first.lock().expect("lock").served, 2);
    // The rerun asks only for the two missing batches.
    let (url2, second) = serve(Log {
        tokens_per_reply: 50,
        first_example: 100,
        ..Default::default()
    })
    .await;
    let items = synth::synthesize(&s0(&url2), &[], cache.path(), Some(ApiKey::new(KEY)), &fast())
        .await
        .expect("resumes");
    assert_eq!(second.lock().expect("lock").requests.len(), 2);
    assert_eq!(items.len(), 8);
    let out = curate_all(&items);
    assert_eq!(out.stats.duplicates, 0, "{:?}", out.stats);
    assert_eq!(out.stats.kept, 8);
    // And a third run asks for nothing at all.
    let (url3, third) = serve(Log::default()).await;
    let again = synth::synthesize(&s0(&url3), &[], cache.path(), Some(ApiKey::new(KEY)), &fast())
        .await
        .expect("cached");
    assert_eq!(again.len(), 8);
    assert!(third.lock().expect("lock").requests.is_empty());
}

#[tokio::test]
async fn malformed_model_output_is_rejected_with_a_reason() {
    let script = VecDeque::from([
        Reply::Text("Sure! Here are two great examples about firewalls for you.".into()),
        Reply::Text("```json\n{\"examples\": [{\"question\": \"What is a DMZ\", \"answer\": \"A DMZ".into()),
    ]);
    let (url, _log) = serve(Log {
        script,
        tokens_per_reply: 50,
        ..Default::default()
    })
    .await;
    let cache = tempfile::tempdir().expect("tempdir");
    let items = synth::synthesize(
        &spec(SynthesisProvider::Ollama, &url, &[("osi-model", 6)]),
        &[],
        cache.path(),
        None,
        &fast(),
    )
    .await
    .expect("malformed output is data, not a failed run");
    assert_eq!(
        items.len(),
        4,
        "two malformed batches (one rejection each) and one good batch of two"
    );
    let out = curate_all(&items);
    let reasons: Vec<Reason> = out
        .fates
        .iter()
        .filter_map(|f| match f {
            Fate::Rejected(r) => Some(r.reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![Reason::MalformedModelOutput, Reason::MalformedModelOutput]
    );
    assert_eq!(out.stats.kept, 2);
}

#[test]
fn api_keys_are_redacted_and_read_from_a_secret_file() {
    assert_eq!(format!("{:?}", ApiKey::new(KEY)), "ApiKey(<redacted>)");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("openai")).expect("mkdir");
    std::fs::write(dir.path().join("openai/key"), format!("{KEY}\n")).expect("write");
    let r = fireweave_ai::api::SecretKeyRef {
        name: "openai".into(),
        key: "key".into(),
    };
    let k = ApiKey::resolve(SynthesisProvider::Openai, Some(&r), dir.path())
        .expect("reads")
        .expect("some");
    assert!(!format!("{k:?}").contains("sk-"));
    let missing = fireweave_ai::api::SecretKeyRef {
        name: "nope".into(),
        key: "key".into(),
    };
    let err =
        ApiKey::resolve(SynthesisProvider::Openai, Some(&missing), Path::new("/nonexistent")).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/nope/key"), "{err}");
}
