//! `fireweave-ai operator`: the controllers, /metrics, /healthz, /readyz and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus::{Encoder, HistogramVec, IntCounterVec, Registry, TextEncoder};

use super::config::{Args, Settings};
use super::context::{Context, Error};
use super::dataset;
use crate::api::Dataset;

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("serving {addr}: {source}")]
    Http { addr: std::net::SocketAddr, source: std::io::Error },
}

/// Reconcile counters and durations, labelled by kind and a fixed error category.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            prometheus::Opts::new("fireweave_operator_reconciles_total", "Reconciles run"),
            &["kind"],
        )?;
        let errors = IntCounterVec::new(
            prometheus::Opts::new("fireweave_operator_reconcile_errors_total", "Reconciles that failed, by category"),
            &["kind", "category"],
        )?;
        let duration = HistogramVec::new(
            prometheus::HistogramOpts::new("fireweave_operator_reconcile_duration_seconds", "Reconcile duration")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["kind"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { registry, reconciles, errors, duration })
    }

    fn observe(&self, kind: &str, started: Instant, error: Option<&Error>) {
        self.reconciles.with_label_values(&[kind]).inc();
        self.duration.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
        if let Some(e) = error {
            self.errors.with_label_values(&[kind, e.category()]).inc();
        }
    }
}

struct Shared {
    metrics: Metrics,
    ready: AtomicBool,
}

async fn metrics_handler(State(s): State<Arc<Shared>>) -> (StatusCode, String) {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&s.metrics.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, String::from_utf8_lossy(&buf).into_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> StatusCode {
    if s.ready.load(Ordering::Relaxed) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

/// Runs until SIGTERM/SIGINT, then lets in-flight reconciles finish.
pub async fn run(args: Args) -> Result<(), OperatorError> {
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let shared = Arc::new(Shared { metrics: Metrics::new()?, ready: AtomicBool::new(false) });
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| OperatorError::Http { addr: args.http_addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });

    let ctx = Arc::new(Context { client: client.clone(), settings: Settings::from(&args), http: reqwest::Client::new() });
    let namespaces = if args.namespaces.is_empty() { vec![None] } else { args.namespaces.iter().cloned().map(Some).collect() };
    let mut controllers = Vec::new();
    for ns in namespaces {
        let api = |c: &Client| -> (Api<Dataset>, Api<Job>, Api<ConfigMap>) {
            match &ns {
                Some(ns) => (Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns)),
                None => (Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone())),
            }
        };
        let (datasets, jobs, config_maps) = api(&client);
        let metrics = shared.metrics.clone();
        let ctx = ctx.clone();
        let controller = Controller::new(datasets, watcher::Config::default())
            .owns(jobs, watcher::Config::default())
            .owns(config_maps, watcher::Config::default())
            .shutdown_on_signal()
            .run(
                move |obj, ctx: Arc<Context>| {
                    let metrics = metrics.clone();
                    async move {
                        let started = Instant::now();
                        let result = dataset::reconcile::reconcile(obj, ctx).await;
                        metrics.observe("Dataset", started, result.as_ref().err());
                        result
                    }
                },
                |_obj, err: &Error, _ctx| {
                    tracing::warn!(category = err.category(), error = %err, "reconcile failed");
                    Action::requeue(Duration::from_secs(30))
                },
                ctx,
            )
            .for_each(|_| async {});
        controllers.push(controller);
    }
    shared.ready.store(true, Ordering::Relaxed);
    tracing::info!("operator running");
    futures::future::join_all(controllers).await;
    tracing::info!("operator stopped");
    Ok(())
}
