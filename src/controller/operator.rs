//! `fireweave-ai operator`: the controllers, /metrics, /healthz, /readyz and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus::{Encoder, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry, TextEncoder};
use serde::de::DeserializeOwned;

use super::cache::api;
use super::config::{Args, Settings};
use super::context::{Context, Error};
use super::leader::LeaderElection;
use super::{cache, dataset, model_serving, training_run};
use crate::api::conditions::Phase;
use crate::api::{Dataset, ModelServing, TrainingRun};

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("serving {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Reconcile counters and durations, labelled by kind and a fixed error category.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    objects: IntGaugeVec,
    evaluations: IntGaugeVec,
    evaluation_passed: IntGaugeVec,
    evaluation_loss: GaugeVec,
    evaluation_tool_calls: GaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            prometheus::Opts::new("fireweave_operator_reconciles_total", "Reconciles run"),
            &["kind"],
        )?;
        let errors = IntCounterVec::new(
            prometheus::Opts::new(
                "fireweave_operator_reconcile_errors_total",
                "Reconciles that failed, by category",
            ),
            &["kind", "category"],
        )?;
        let duration = HistogramVec::new(
            prometheus::HistogramOpts::new("fireweave_operator_reconcile_duration_seconds", "Reconcile duration")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["kind"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        let objects = IntGaugeVec::new(
            prometheus::Opts::new(
                "fireweave_operator_objects",
                "Custom resources in the watched namespaces, by phase",
            ),
            &["kind", "phase"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(objects.clone()))?;
        let evaluations = IntGaugeVec::new(
            prometheus::Opts::new(
                "fireweave_operator_evaluations",
                "TrainingRuns whose current attempt was evaluated, by the gate's result (passed, failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(evaluations.clone()))?;
        // Per TrainingRun, from its status.evaluation (the current attempt's), so a dashboard can draw the figures
        // and an alert can name the run whose gate failed. `namespace` is the run's: the ServiceMonitor keeps
        // these labels (honorLabels) instead of renaming them after the operator Pod's own.
        let evaluation_passed = IntGaugeVec::new(
            prometheus::Opts::new(
                "fireweave_operator_evaluation_passed",
                "Whether a TrainingRun's current attempt passed its evaluation gate (1) or failed it (0)",
            ),
            &["namespace", "trainingrun"],
        )?;
        let evaluation_loss = GaugeVec::new(
            prometheus::Opts::new(
                "fireweave_operator_evaluation_loss",
                "Held-out loss (nats per assistant token) of a TrainingRun's models: base, adapter, each GGUF",
            ),
            &["namespace", "trainingrun", "model"],
        )?;
        let evaluation_tool_calls = GaugeVec::new(
            prometheus::Opts::new(
                "fireweave_operator_evaluation_tool_call_accuracy",
                "Share of the held-out reference tool calls a TrainingRun's models made: base, each GGUF",
            ),
            &["namespace", "trainingrun", "model"],
        )?;
        registry.register(Box::new(evaluation_passed.clone()))?;
        registry.register(Box::new(evaluation_loss.clone()))?;
        registry.register(Box::new(evaluation_tool_calls.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            errors,
            duration,
            objects,
            evaluations,
            evaluation_passed,
            evaluation_loss,
            evaluation_tool_calls,
        })
    }

    /// The evaluation gauges for `runs` as they are now (a run deleted since the last scrape drops out).
    pub fn observe_evaluations<'a>(&self, runs: impl IntoIterator<Item = &'a TrainingRun>) {
        for gauge in [&self.evaluation_loss, &self.evaluation_tool_calls] {
            gauge.reset();
        }
        self.evaluations.reset();
        self.evaluation_passed.reset();
        for run in runs {
            let Some(e) = run.status.as_ref().and_then(|st| st.evaluation.as_ref()) else {
                continue;
            };
            let (ns, name) = (run.namespace().unwrap_or_default(), run.name_any());
            let result = if e.passed { "passed" } else { "failed" };
            self.evaluations.with_label_values(&[result]).inc();
            self.evaluation_passed
                .with_label_values(&[ns.as_str(), &name])
                .set(i64::from(e.passed));
            let models = [("base", &e.base), ("adapter", &e.adapter)]
                .into_iter()
                .chain(e.gguf.iter().map(|g| (g.quantization.as_str(), &g.figures)));
            for (model, figures) in models {
                let labels = [ns.as_str(), &name, model];
                if let Some(loss) = figures.loss {
                    self.evaluation_loss.with_label_values(&labels).set(loss);
                }
                if let Some(accuracy) = figures.tool_call_accuracy {
                    self.evaluation_tool_calls.with_label_values(&labels).set(accuracy);
                }
            }
        }
    }

    pub fn observe(&self, kind: &str, started: Instant, error: Option<&Error>) {
        self.reconciles.with_label_values(&[kind]).inc();
        self.duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        if let Some(e) = error {
            self.errors.with_label_values(&[kind, e.category()]).inc();
        }
    }
}

/// Phase of each cached object, for the `fireweave_operator_objects` gauge.
type PhaseCounter = Box<dyn Fn() -> Vec<(&'static str, String)> + Send + Sync>;

struct Shared {
    metrics: Metrics,
    ready: AtomicBool,
    phases: std::sync::Mutex<Vec<PhaseCounter>>,
    /// The cached TrainingRuns, for the evaluation gauges.
    runs: std::sync::Mutex<Option<Store<TrainingRun>>>,
}

async fn metrics_handler(State(s): State<Arc<Shared>>) -> (StatusCode, String) {
    s.metrics.objects.reset();
    for count in s.phases.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        for (kind, phase) in count() {
            s.metrics.objects.with_label_values(&[kind, &phase]).inc();
        }
    }
    let runs = s
        .runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|store| store.state())
        .unwrap_or_default();
    s.metrics.observe_evaluations(runs.iter().map(|r| r.as_ref()));
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&s.metrics.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, String::from_utf8_lossy(&buf).into_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> StatusCode {
    if s.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn phase_of<K, S>(kind: &'static str, store: Store<K>, phase: fn(&S) -> Option<Phase>) -> PhaseCounter
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static + kube::core::object::HasStatus<Status = S>,
    S: 'static,
{
    Box::new(move || {
        store
            .state()
            .iter()
            .map(|o| (kind, o.status().and_then(phase).unwrap_or(Phase::Pending).to_string()))
            .collect()
    })
}

/// Reconciles running at once, over every controller and namespace. Unbounded, 2,000 resources created
/// together started 2,000 reconciles at once (kube-runtime's default), and the API server answered over a
/// quarter of their status writes with 429 (priority and fairness shedding the burst), each a failed
/// reconcile to retry; a bound also bounds the requests (and connections) in flight.
const RECONCILE_SLOTS: usize = 32;

/// What a reconcile waits for before it starts: the watches' first lists, and a free slot.
#[derive(Clone)]
struct Gate {
    synced: tokio::sync::watch::Receiver<bool>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Runs one controller's reconciles, timing each and counting failures by category. No reconcile starts
/// before `synced` says every watch has listed once: a reconcile that read a child's store before then
/// would take a missing child for a deleted one.
async fn drive<K, F, Fut>(
    controller: Controller<K>,
    kind: &'static str,
    reconcile: F,
    ctx: Arc<Context>,
    metrics: Metrics,
    gate: Gate,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    controller
        .shutdown_on_signal()
        .run(
            move |obj, ctx: Arc<Context>| {
                let (metrics, reconcile, mut gate) = (metrics.clone(), reconcile.clone(), gate.clone());
                async move {
                    // The watches keep feeding the controller meanwhile (waiting outside the reconcile would
                    // stall the shared streams, and with them the lists being waited for).
                    let _ = gate.synced.wait_for(|s| *s).await;
                    let _slot = gate.slots.acquire().await;
                    let started = Instant::now();
                    // Boxed, so that it is allocated only now: inline, every reconcile waiting for a slot (all
                    // 2,000 of a burst) carried the space of a running one, ~15 KB of state each, and heaptrack
                    // put 28 MiB of the operator's peak heap there.
                    let result = Box::pin(reconcile(obj, ctx)).await;
                    metrics.observe(kind, started, result.as_ref().err());
                    result
                }
            },
            move |obj: Arc<K>, err: &Error, _ctx| {
                // One object's failure is logged and retried on its own; the other objects keep reconciling.
                tracing::warn!(kind, name = %obj.name_any(), namespace = ?obj.namespace(), category = err.category(), error = %err, "reconcile failed");
                if err.is_throttled() {
                    // The API server shed load (429): back soon, spread out, not in one burst 30 s from now.
                    let spread = u64::from(std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_millis()));
                    return Action::requeue(Duration::from_millis(1000 + 4 * spread));
                }
                Action::requeue(Duration::from_secs(30))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// Waits until the three CRDs answer a list: the operator is not ready in a cluster without them.
async fn wait_for_crds(client: &Client, namespaces: &[Option<String>]) {
    let one = ListParams::default().limit(1);
    loop {
        let mut missing = Vec::new();
        for ns in namespaces {
            if let Err(e) = api::<Dataset>(client, ns).list_metadata(&one).await {
                missing.push(format!("Dataset: {e}"));
            }
            if let Err(e) = api::<TrainingRun>(client, ns).list_metadata(&one).await {
                missing.push(format!("TrainingRun: {e}"));
            }
            if let Err(e) = api::<ModelServing>(client, ns).list_metadata(&one).await {
                missing.push(format!("ModelServing: {e}"));
            }
        }
        if missing.is_empty() {
            return;
        }
        tracing::warn!(
            ?missing,
            "custom resources not served yet (are the CRDs installed?); retrying"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Holds the Lease or waits for it; returns once this replica leads.
async fn become_leader(election: &LeaderElection) {
    loop {
        match election.try_acquire().await {
            Ok(true) => return,
            Ok(false) => tracing::info!("another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::time::sleep(election.renew_every()).await;
    }
}

/// Runs until SIGTERM/SIGINT, then lets in-flight reconciles finish.
pub async fn run(args: Args) -> Result<(), OperatorError> {
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    run_with(client, args).await
}

/// [`run`] against a given API client (the in-memory API server in tests).
pub async fn run_with(client: Client, args: Args) -> Result<(), OperatorError> {
    let shared = Arc::new(Shared {
        metrics: Metrics::new()?,
        ready: AtomicBool::new(false),
        phases: Default::default(),
        runs: Default::default(),
    });
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| OperatorError::Http {
            addr: args.http_addr,
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });

    let election = args.leader_election.then(|| {
        let identity =
            std::env::var("POD_NAME").unwrap_or_else(|_| format!("fireweave-ai-operator-{}", std::process::id()));
        let leases: Api<Lease> = Api::namespaced(client.clone(), &args.lease_namespace);
        Arc::new(LeaderElection::new(
            leases,
            &args.lease_name,
            &identity,
            Duration::from_secs(15),
        ))
    });
    if let Some(election) = &election {
        become_leader(election).await;
        tracing::info!("leading");
        let election = election.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(election.renew_every()).await;
                if !matches!(election.try_acquire().await, Ok(true)) {
                    // Another replica may already be reconciling: stop at once rather than act twice.
                    tracing::error!("lost the leader Lease; exiting so a restart can wait for it again");
                    std::process::exit(1);
                }
            }
        });
    }

    let namespaces = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    wait_for_crds(&client, &namespaces).await;
    // One watch per kind and scope, shared by every controller that needs the kind; the reconciles read
    // the same stores (src/controller/cache.rs).
    let mut watch_tasks = Vec::new();
    let scopes: Vec<(cache::Scope, cache::Triggers)> = namespaces
        .iter()
        .map(|ns| cache::Scope::start(&client, ns, &mut watch_tasks))
        .collect();
    let mut context = Context::new(client.clone(), Settings::from(&args));
    context.cache = Some(cache::Cache::new(scopes.iter().map(|(s, _)| s.clone()).collect()));
    let ctx = Arc::new(context);
    let mut tasks = Vec::new();
    let mut stores_ready = Vec::new();
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let gate = Gate {
        synced: synced_rx,
        slots: Arc::new(tokio::sync::Semaphore::new(RECONCILE_SLOTS)),
    };
    for (scope, mut t) in scopes {
        let datasets = Controller::for_shared_stream(cache::take(&mut t.datasets), scope.datasets.clone())
            .owns_shared_stream(cache::take(&mut t.jobs))
            .owns_shared_stream(cache::take(&mut t.config_maps));

        let run_store = scope.runs.clone();
        // A Dataset that becomes Ready (or is rebuilt) wakes the TrainingRuns that read it.
        let runs = Controller::for_shared_stream(cache::take(&mut t.runs), scope.runs.clone())
            .owns_shared_stream(cache::take(&mut t.jobs))
            .owns_shared_stream(cache::take(&mut t.config_maps))
            .watches_shared_stream(cache::take(&mut t.datasets), move |ds| {
                let (ns, name) = (ds.namespace(), ds.name_any());
                run_store
                    .state()
                    .iter()
                    .filter(|tr| tr.namespace() == ns && tr.spec.dataset_ref.name == name)
                    .map(|tr| ObjectRef::from_obj(tr.as_ref()))
                    .collect::<Vec<_>>()
            });

        let serving_store = scope.servings.clone();
        // A TrainingRun that publishes new GGUF files wakes the servings that use it: that starts the rollout.
        let servings = Controller::for_shared_stream(cache::take(&mut t.servings), scope.servings.clone())
            .owns_shared_stream(cache::take(&mut t.deployments))
            .owns_shared_stream(cache::take(&mut t.services))
            .owns_shared_stream(cache::take(&mut t.config_maps))
            .owns_shared_stream(cache::take(&mut t.policies))
            .watches_shared_stream(cache::take(&mut t.runs), move |tr| {
                let (ns, name) = (tr.namespace(), tr.name_any());
                serving_store
                    .state()
                    .iter()
                    .filter(|ms| ms.namespace() == ns)
                    .filter(|ms| ms.spec.model.training_run_ref.as_ref().is_some_and(|r| r.name == name))
                    .map(|ms| ObjectRef::from_obj(ms.as_ref()))
                    .collect::<Vec<_>>()
            });

        let (ds_store, tr_store, ms_store) = (scope.datasets.clone(), scope.runs.clone(), scope.servings.clone());
        *shared.runs.lock().unwrap_or_else(|p| p.into_inner()) = Some(tr_store.clone());
        {
            let mut phases = shared.phases.lock().unwrap_or_else(|p| p.into_inner());
            phases.push(phase_of(
                "Dataset",
                ds_store.clone(),
                |s: &crate::api::DatasetStatus| s.phase,
            ));
            phases.push(phase_of(
                "TrainingRun",
                tr_store.clone(),
                |s: &crate::api::TrainingRunStatus| s.phase,
            ));
            phases.push(phase_of(
                "ModelServing",
                ms_store.clone(),
                |s: &crate::api::ModelServingStatus| s.phase,
            ));
        }
        stores_ready.push(async move { scope.wait_until_ready().await });
        let m = shared.metrics.clone();
        tasks.push(tokio::spawn(drive(
            datasets,
            "Dataset",
            dataset::reconcile::reconcile,
            ctx.clone(),
            m.clone(),
            gate.clone(),
        )));
        tasks.push(tokio::spawn(drive(
            runs,
            "TrainingRun",
            training_run::reconcile::reconcile,
            ctx.clone(),
            m.clone(),
            gate.clone(),
        )));
        tasks.push(tokio::spawn(drive(
            servings,
            "ModelServing",
            model_serving::reconcile::reconcile,
            ctx.clone(),
            m,
            gate.clone(),
        )));
    }
    let ready_flag = shared.clone();
    tokio::spawn(async move {
        futures::future::join_all(stores_ready).await;
        let _ = synced_tx.send(true);
        ready_flag.ready.store(true, Ordering::Relaxed);
        tracing::info!("caches synced; ready");
    });
    tracing::info!(namespaces = ?namespaces, "operator running");
    futures::future::join_all(tasks).await;
    // The controllers have stopped (a signal): their watches go with them.
    for w in watch_tasks {
        w.abort();
    }
    if let Some(election) = &election
        && let Err(e) = election.release().await
    {
        tracing::warn!(error = %e, "could not release the leader Lease");
    }
    tracing::info!("operator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(ns: &str, name: &str, evaluation: Option<serde_json::Value>) -> TrainingRun {
        serde_json::from_value(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"baseModel": {"path": "m"}, "datasetRef": {"name": "d"}},
            "status": evaluation.map(|e| json!({"evaluation": e})).unwrap_or(json!({}))}))
        .unwrap()
    }

    fn scrape(m: &Metrics) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&m.registry.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn evaluation_gauges_name_each_run_and_model_and_drop_runs_that_are_gone() {
        let m = Metrics::new().unwrap();
        let passed = run(
            "team-a",
            "fw",
            Some(json!({"passed": true,
                "base": {"loss": 3.4052, "toolCallAccuracy": 0.0}, "adapter": {"loss": 3.0273},
                "gguf": [{"quantization": "Q8_0", "digest": crate::contract::digest::fake("q8"),
                          "loss": 3.033, "toolCallAccuracy": 0.5, "templateMatch": true}]})),
        );
        let failed = run(
            "team-b",
            "diverged",
            Some(json!({"passed": false, "failures": ["the run diverged"],
                "base": {"loss": 3.4}, "adapter": {"loss": 17.1}})),
        );
        let training = run("team-b", "still-training", None);
        m.observe_evaluations([&passed, &failed, &training]);
        let text = scrape(&m);
        for line in [
            r#"fireweave_operator_evaluation_passed{namespace="team-a",trainingrun="fw"} 1"#,
            r#"fireweave_operator_evaluation_passed{namespace="team-b",trainingrun="diverged"} 0"#,
            r#"fireweave_operator_evaluation_loss{model="base",namespace="team-a",trainingrun="fw"} 3.4052"#,
            r#"fireweave_operator_evaluation_loss{model="adapter",namespace="team-a",trainingrun="fw"} 3.0273"#,
            r#"fireweave_operator_evaluation_loss{model="Q8_0",namespace="team-a",trainingrun="fw"} 3.033"#,
            r#"fireweave_operator_evaluation_loss{model="adapter",namespace="team-b",trainingrun="diverged"} 17.1"#,
            r#"fireweave_operator_evaluation_tool_call_accuracy{model="Q8_0",namespace="team-a",trainingrun="fw"} 0.5"#,
            r#"fireweave_operator_evaluation_tool_call_accuracy{model="base",namespace="team-a",trainingrun="fw"} 0"#,
            r#"fireweave_operator_evaluations{result="failed"} 1"#,
            r#"fireweave_operator_evaluations{result="passed"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("still-training"),
            "a run without an evaluation has no series:\n{text}"
        );
        assert!(
            !text.contains(r#"fireweave_operator_evaluation_tool_call_accuracy{model="adapter""#),
            "the adapter has no tool-call figure:\n{text}"
        );

        // The next scrape after the passed run is deleted: its series are gone.
        m.observe_evaluations([&failed]);
        let text = scrape(&m);
        assert!(!text.contains(r#"trainingrun="fw""#), "{text}");
        assert!(
            text.contains(r#"fireweave_operator_evaluations{result="failed"} 1"#),
            "{text}"
        );
    }
}
