//! Running each resource on this machine with the cluster's worker code: `dataset`, `train` + `quantize`,
//! `serve`. Each step writes the spec.json a Job would get (paths made absolute, since the manifest's folder
//! is not the worker's), calls the worker, and turns its result into the resource's status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::manifest::{Key, Manifest, Resource};
use super::state::{self, Fingerprint, StateError};
use super::{Done, RunArgs, graph};
use crate::api::conditions::{EVALUATED, Health, Phase, now, reason, set_condition, set_health};
use crate::api::model_serving::{GgufFile, ModelSource, ServedModel};
use crate::api::training_run::TrainingArtifacts;
use crate::api::{Dataset, DatasetStatus, ModelServing, ModelServingStatus, TrainingRun, TrainingRunStatus};
use crate::contract::document::{self, Kind};
use crate::contract::{Digest, StepFailed, annotations, fingerprint, run_step};

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::IoError),
    #[error("{key}: {message}")]
    Failed { key: String, message: String },
}

fn failed(key: &Key, message: impl std::fmt::Display) -> StepError {
    StepError::Failed {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// A ModelServing ready to be served once every build step is done.
pub struct Serving {
    pub key: Key,
    pub object: ModelServing,
    pub addr: SocketAddr,
    pub spec_path: PathBuf,
    pub model: ServedModel,
    pub inputs: Digest,
}

/// The state of one local run: what each step produced, in order.
pub struct Pipeline {
    pub args: RunArgs,
    pub artifacts: PathBuf,
    pub datasets: BTreeMap<Key, Dataset>,
    pub runs: BTreeMap<Key, TrainingRun>,
    pub servings: Vec<Serving>,
    pub done: Vec<(Key, Done, Duration)>,
    pub status_files: Vec<PathBuf>,
    /// When the run began: every phase line says how long ago, and the summary the total.
    pub began: Instant,
}

impl Pipeline {
    pub fn new(args: &RunArgs, artifacts: PathBuf) -> Self {
        Pipeline {
            args: args.clone(),
            artifacts,
            datasets: BTreeMap::new(),
            runs: BTreeMap::new(),
            servings: Vec::new(),
            done: Vec::new(),
            status_files: Vec::new(),
            began: began(),
        }
    }

    pub fn done(&self) -> Vec<(Key, Done)> {
        self.done.iter().map(|(k, d, _)| (k.clone(), d.clone())).collect()
    }

    pub fn run(&mut self, m: &Manifest) -> Result<(), StepError> {
        let started = Instant::now();
        // One line per phase from the first second, whatever the terminal: people follow a long run by these.
        tracing::info!(resource = %m.key, at = %clock(self.began.elapsed()), "{}", phase_name(&m.resource));
        let bar = crate::telemetry::bar(0, m.key.kind);
        bar.set_message(format!("{}/{}", m.key.namespace, m.key.name));
        let done = match &m.resource {
            Resource::Dataset(ds) => self.dataset(m, ds),
            Resource::TrainingRun(tr) => self.training_run(m, tr),
            Resource::ModelServing(ms) => self.model_serving(m, ms),
        };
        bar.finish_and_clear();
        let done = done?;
        let took = started.elapsed();
        let what = match done {
            Done::Ran => format!("done in {:.1} s", took.as_secs_f64()),
            Done::Skipped => "unchanged, skipped".to_string(),
        };
        tracing::info!(resource = %m.key, "{what}");
        self.done.push((m.key.clone(), done, took));
        Ok(())
    }

    fn spec_file(&self, key: &Key) -> PathBuf {
        self.artifacts.join("local").join(&key.namespace).join(format!(
            "{}-{}.spec.json",
            key.kind.to_ascii_lowercase(),
            key.name
        ))
    }

    /// Writes the document a Job would get and reads it back through the contract's loader, exactly as the
    /// worker in the Pod does: what runs here is what a cluster would run.
    fn write_spec<K: Kind>(&self, key: &Key, doc: &serde_json::Value) -> Result<(PathBuf, K), StepError> {
        let path = self.spec_file(key);
        let text = serde_json::to_vec_pretty(doc).unwrap_or_default();
        crate::artifact::write_atomic(&path, &text)?;
        let object = document::load::<K>(&path).map_err(|e| StepError::Failed {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        Ok((path, object))
    }

    /// Records a failed step as the operator would (phase Failed, `Stalled` with the worker's reason) in the
    /// status file, so `status/` says why even after the terminal scrolled away; returns the error.
    fn record_failure<K: Kind>(&mut self, m: &Manifest, object: &K, failed: StepFailed) -> StepError {
        let mut conditions = Vec::new();
        set_health(
            &mut conditions,
            Health::Stalled,
            reason::JOB_FAILED,
            &failed.to_string(),
            Some(1),
            &now(),
        );
        let mut value = serde_json::to_value(object).unwrap_or_default();
        value["status"] = serde_json::json!({"phase": Phase::Failed, "conditions": conditions});
        // An inputs digest nothing can match: a failed step always runs again.
        match state::write(&self.artifacts, &m.key, &value, &Digest::of(b"failed")) {
            Ok(path) => self.status_files.push(path),
            Err(e) => tracing::warn!(error = %e, "could not write the failed status"),
        }
        failed_step(&m.key, &failed)
    }

    /// An absolute local path for a path in a spec (the graph step already checked it exists).
    fn absolute(&self, m: &Manifest, path: &str) -> Result<String, StepError> {
        let found = graph::resolve(path, m.dir(), &self.artifacts)
            .ok_or_else(|| failed(&m.key, format!("{path} does not exist")))?;
        let abs = found
            .canonicalize()
            .map_err(|source| StepError::Io { path: found, source })?;
        Ok(abs.display().to_string())
    }

    fn dataset(&mut self, m: &Manifest, ds: &Dataset) -> Result<Done, StepError> {
        let mut spec = ds.spec.clone();
        let mut fp = Fingerprint::new("Dataset/1");
        fp.json(&ds.spec);
        for s in &mut spec.sources {
            if let Some(p) = &s.path {
                let abs = self.absolute(m, p)?;
                fp.tree(Path::new(&abs))?;
                s.path = Some(abs);
            }
        }
        let inputs = fp.finish();
        if let Some(stored) = state::read::<Dataset>(&self.artifacts, &m.key)
            && !self.args.force
            && stored.inputs_digest == Some(inputs)
            && let Some(a) = stored.object.status.as_ref().and_then(|s| s.artifact.as_ref())
            && self.artifacts.join(&a.uri).join("train.jsonl").is_file()
        {
            self.datasets.insert(m.key.clone(), stored.object);
            return Ok(Done::Skipped);
        }
        let (_, resource) = self.write_spec::<Dataset>(&m.key, &document::render(ds, &spec, &BTreeMap::new()))?;
        let options = crate::dataset::BuildOptions {
            artifacts: self.artifacts.clone(),
            base_dir: m.dir().to_path_buf(),
            openai: false,
        };
        let result = match run_step("dataset", Path::new(""), || {
            crate::dataset::build(&resource, &options).map(|r| r.result())
        }) {
            Ok(r) => r,
            Err(failed) => return Err(self.record_failure(m, ds, failed)),
        };
        let stats = result.stats;
        let message = format!(
            "kept {} of {} examples ({} train, {} eval)",
            stats.kept, stats.input, stats.train, stats.eval
        );
        let mut status = DatasetStatus {
            artifact: Some(result.artifact),
            stats: Some(stats),
            phase: Some(Phase::Succeeded),
            ..Default::default()
        };
        set_health(
            &mut status.conditions,
            Health::Ready,
            reason::SUCCEEDED,
            &message,
            Some(1),
            &now(),
        );
        let mut object = ds.clone();
        object.status = Some(status);
        self.status_files
            .push(state::write(&self.artifacts, &m.key, &object, &inputs)?);
        self.datasets.insert(m.key.clone(), object);
        Ok(Done::Ran)
    }

    fn training_run(&mut self, m: &Manifest, tr: &TrainingRun) -> Result<Done, StepError> {
        let ds_key = Key {
            kind: "Dataset",
            namespace: m.key.namespace.clone(),
            name: tr.spec.dataset_ref.name.clone(),
        };
        let dataset = self
            .datasets
            .get(&ds_key)
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.artifact.clone())
            .ok_or_else(|| failed(&m.key, format!("{ds_key} produced no dataset")))?;
        let mut spec = tr.spec.clone();
        // The operator's fingerprint of the run, plus the base model's files: on one machine a model folder
        // is edited in place more often than a volume's.
        let produced = fingerprint::produced(&tr.spec, &dataset.digest);
        let mut fp = Fingerprint::new("TrainingRun/2");
        fp.text(&produced.to_string());
        if let Some(p) = &tr.spec.base_model.path {
            let abs = self.absolute(m, p)?;
            fp.model_dir(Path::new(&abs))?;
            spec.base_model.path = Some(abs);
        }
        let inputs = fp.finish();
        if let Some(stored) = state::read::<TrainingRun>(&self.artifacts, &m.key)
            && !self.args.force
            && stored.inputs_digest == Some(inputs)
            && self.outputs_intact(&stored.object)
        {
            self.runs.insert(m.key.clone(), stored.object);
            return Ok(Done::Skipped);
        }
        let worker_annotations = BTreeMap::from([
            (annotations::DATASET_URI.to_string(), dataset.uri.clone()),
            (annotations::DATASET_DIGEST.to_string(), dataset.digest.to_string()),
        ]);
        let (_, run) = self.write_spec::<TrainingRun>(&m.key, &document::render(tr, &spec, &worker_annotations))?;
        let mut options = crate::train::TrainOptions::local(self.artifacts.clone());
        options.base_dir = m.dir().to_path_buf();
        options.device = self.args.device.clone();
        options.threads = self.args.threads;
        let trained = match run_step("train", Path::new(""), || crate::train::run::train(&run, &options)) {
            Ok(t) => t,
            Err(failed) => return Err(self.record_failure(m, tr, failed)),
        };
        let quantized = match run_step("quantize", Path::new(""), || {
            crate::gguf::cli::quantize_training_run(&run, &self.artifacts)
        }) {
            Ok(q) => q,
            Err(failed) => return Err(self.record_failure(m, tr, failed)),
        };
        let evaluation = if run.spec.evaluation.enabled {
            let options = crate::eval::EvalOptions {
                artifacts: self.artifacts.clone(),
                base_dir: m.dir().to_path_buf(),
                dataset: None,
                threads: self.args.threads.unwrap_or_else(crate::eval::default_threads),
            };
            match run_step("evaluate", Path::new(""), || crate::eval::evaluate(&run, &options)) {
                Ok(e) => Some(e),
                Err(failed) => return Err(self.record_failure(m, tr, failed)),
            }
        } else {
            None
        };
        let mut status = TrainingRunStatus {
            attempt: 1,
            inputs_digest: Some(produced),
            dataset: Some(dataset),
            final_loss: trained.final_loss,
            eval_loss: trained.eval_loss,
            artifacts: Some(TrainingArtifacts {
                adapter: Some(trained.adapter.clone()),
                merged: trained.merged.clone(),
                gguf: quantized.gguf,
                chat_format: trained.chat_format,
            }),
            phase: Some(Phase::Succeeded),
            ..Default::default()
        };
        let mut message = format!(
            "trained {} steps, final loss {}, eval loss {}; {} GGUF file(s)",
            trained.steps,
            fmt_loss(trained.final_loss),
            fmt_loss(trained.eval_loss),
            status.artifacts.as_ref().map_or(0, |a| a.gguf.len())
        );
        // The gate decides as in a cluster: a model that failed is recorded, not served.
        let mut health = (Health::Ready, reason::SUCCEEDED);
        if let Some(e) = evaluation {
            let (passed, why) = if e.passed {
                (true, "the evaluation gate passed".to_string())
            } else {
                (false, format!("evaluation gate failed: {}", e.failures.join("; ")))
            };
            let gate_reason = if passed {
                reason::GATE_PASSED
            } else {
                reason::GATE_FAILED
            };
            set_condition(
                &mut status.conditions,
                EVALUATED,
                passed,
                gate_reason,
                &why,
                Some(1),
                &now(),
            );
            if passed {
                let a = status.artifacts.as_ref();
                status.passed = Some(crate::api::training_run::PassedArtifacts {
                    attempt: 1,
                    gguf: a.map(|a| a.gguf.clone()).unwrap_or_default(),
                    chat_format: a.and_then(|a| a.chat_format),
                });
            } else {
                status.phase = Some(Phase::Failed);
                health = (Health::Stalled, reason::GATE_FAILED);
                message = why;
            }
            status.evaluation = Some(e);
        }
        set_health(&mut status.conditions, health.0, health.1, &message, Some(1), &now());
        let mut object = tr.clone();
        object.status = Some(status);
        self.status_files
            .push(state::write(&self.artifacts, &m.key, &object, &inputs)?);
        self.runs.insert(m.key.clone(), object);
        Ok(Done::Ran)
    }

    /// A stored run is reusable when its adapter is there and every GGUF still has the digest its status
    /// records (a GGUF copied over or truncated is caught here, not at serving time).
    fn outputs_intact(&self, tr: &TrainingRun) -> bool {
        let Some(a) = tr.status.as_ref().and_then(|s| s.artifacts.as_ref()) else {
            return false;
        };
        let adapter_ok = a.adapter.as_ref().is_some_and(|r| self.artifacts.join(&r.uri).exists());
        adapter_ok
            && !a.gguf.is_empty()
            && a.gguf
                .iter()
                .all(|g| crate::artifact::verify_file(&self.artifacts.join(&g.uri), &g.digest).is_ok())
    }

    fn model_serving(&mut self, m: &Manifest, ms: &ModelServing) -> Result<Done, StepError> {
        let run_key = ms.spec.model.training_run_ref.as_ref().map(|r| Key {
            kind: "TrainingRun",
            namespace: m.key.namespace.clone(),
            name: r.name.clone(),
        });
        let run = run_key.as_ref().and_then(|k| self.runs.get(k));
        // The decisions the ModelServing controller makes.
        let mut model = ms.spec.model.resolve(run).map_err(|e| failed(&m.key, e))?;
        crate::api::model_serving::template_fits(&ms.spec, model.chat_format).map_err(|e| failed(&m.key, e))?;
        // `uri` is relative to the artifact folder for a TrainingRun's output, relative to the manifest (or
        // the artifact folder) for a `gguf` path.
        let path = match &ms.spec.model.gguf {
            Some(g) => self.absolute(m, &g.path)?,
            None => self.artifacts.join(&model.uri).display().to_string(),
        };
        model.uri = path.clone();
        let mut spec = ms.spec.clone();
        spec.model = ModelSource {
            training_run_ref: None,
            gguf: Some(GgufFile {
                path,
                sha256: model.digest.to_string(),
            }),
            require_evaluation: ms.spec.model.require_evaluation,
        };
        let (spec_path, _) = self.write_spec::<ModelServing>(&m.key, &document::render(ms, &spec, &BTreeMap::new()))?;
        let port_offset = self.servings.len() as u16;
        let mut addr = self.args.addr;
        addr.set_port(addr.port().saturating_add(port_offset));
        let inputs = Fingerprint::new("ModelServing/1")
            .json(&ms.spec)
            .text(&model.digest.to_string())
            .finish();
        self.servings.push(Serving {
            key: m.key.clone(),
            object: ms.clone(),
            addr,
            spec_path,
            model,
            inputs,
        });
        let serving = self.servings.last().expect("pushed above");
        let pending = Self::serving_status(
            serving,
            false,
            "not serving yet: servers start once every build step is done",
        );
        self.status_files
            .push(state::write(&self.artifacts, &m.key, &pending, &serving.inputs)?);
        // A server is a process, not an artifact: it always starts (in `serve_until_stopped`).
        Ok(Done::Ran)
    }

    /// The ModelServing status for a server at `addr`.
    pub fn serving_status(s: &Serving, ready: bool, message: &str) -> ModelServing {
        let mut status = ModelServingStatus {
            endpoint: Some(format!("http://{}", s.addr)),
            served_model: Some(s.model.clone()),
            ready_replicas: i32::from(ready),
            ..Default::default()
        };
        let (phase, health, why) = if ready {
            (Phase::Serving, Health::Ready, reason::MODEL_SERVED)
        } else {
            (Phase::Pending, Health::Reconciling, reason::ROLLING_OUT)
        };
        status.phase = Some(phase);
        set_health(&mut status.conditions, health, why, message, Some(1), &now());
        let mut object = s.object.clone();
        object.status = Some(status);
        object
    }

    /// Starts every server, waits until each answers `/readyz`, records their status, and blocks until they
    /// stop (SIGINT/SIGTERM: each finishes its in-flight requests first).
    pub fn serve_until_stopped(&mut self) -> Result<(), StepError> {
        let mut threads = Vec::new();
        for s in &self.servings {
            // Every other setting as `fireweave-ai serve` defaults it; the spec's num_ctx sizes the context.
            let args = crate::serve::ServeArgs::for_spec(
                s.spec_path.clone(),
                self.artifacts.clone(),
                s.addr,
                self.args.threads,
            );
            let key = s.key.clone();
            threads.push((key, std::thread::spawn(move || crate::serve::run(args))));
        }
        for (s, (key, thread)) in self.servings.iter().zip(&threads) {
            let bar = crate::telemetry::bar(0, "ModelServing");
            bar.set_message(format!("{key}: loading {}", s.model.uri));
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                if thread.is_finished() {
                    bar.finish_and_clear();
                    return Err(failed(key, "the server stopped while starting (see the log above)"));
                }
                if http_status(s.addr, "/readyz") == Some(200) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(failed(key, "the model did not become ready within 10 minutes"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish_and_clear();
            let model_name = &s.object.spec.model_name;
            let object = Self::serving_status(s, true, &format!("serving {model_name} at http://{}", s.addr));
            state::write(&self.artifacts, key, &object, &s.inputs)?;
            super::view::serving_help(s, self.began.elapsed());
        }
        for (key, thread) in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(failed(&key, e)),
                Err(_) => return Err(failed(&key, "the server thread panicked")),
            }
        }
        Ok(())
    }
}

/// When the run began: now, or when `scripts/quickstart.sh` started (`FIREWEAVE_STARTED_AT`, Unix seconds), so
/// the clock a newcomer reads counts provisioning and the build too.
fn began() -> Instant {
    let now = Instant::now();
    let since = std::env::var("FIREWEAVE_STARTED_AT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .and_then(|t| {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            unix.checked_sub(Duration::from_secs(t))
        });
    since.and_then(|d| now.checked_sub(d)).unwrap_or(now)
}

/// What a resource's step does, for its phase line.
fn phase_name(r: &Resource) -> &'static str {
    match r {
        Resource::Dataset(_) => "dataset: load, validate, score, deduplicate, split",
        Resource::TrainingRun(_) => "train, then quantize (the trainer logs each step with its ETA)",
        Resource::ModelServing(_) => "serve: resolve the GGUF (the server starts once every step is done)",
    }
}

/// `mm:ss` (or `h:mm:ss`) since the run began.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

fn fmt_loss(loss: Option<f64>) -> String {
    loss.map_or_else(|| "n/a".into(), |l| format!("{l:.4}"))
}

fn failed_step(key: &Key, failed: &StepFailed) -> StepError {
    StepError::Failed {
        key: key.to_string(),
        message: failed.to_string(),
    }
}

/// `GET path` on a local server: the status code, or `None` when nothing answers yet.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
