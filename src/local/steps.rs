//! Running each resource on this machine with the cluster's worker code: `dataset`, `train` + `quantize`,
//! `serve`. Each step writes the spec.json a Job would get (paths made absolute, since the manifest's folder
//! is not the worker's), calls the worker, and turns its result into the resource's status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::manifest::{Key, Manifest, Resource};
use super::state::{self, Fingerprint, StateError};
use super::{Done, RunArgs, graph};
use crate::api::conditions::{Health, reason, set_health};
use crate::api::dataset::DatasetStats;
use crate::api::model_serving::{GgufFile, ModelSource, ServedModel};
use crate::api::training_run::{TrainResult, TrainingArtifacts};
use crate::api::{
    ArtifactRef, Dataset, DatasetStatus, ModelServing, ModelServingStatus, TrainingRun, TrainingRunStatus,
};
use crate::controller::training_run::build::{DATASET_DIGEST_ANNOTATION, DATASET_URI_ANNOTATION, inputs_digest};
use crate::controller::workload::spec_document;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
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
    pub inputs: String,
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
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
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
        }
    }

    pub fn done(&self) -> Vec<(Key, Done)> {
        self.done.iter().map(|(k, d, _)| (k.clone(), d.clone())).collect()
    }

    pub fn run(&mut self, m: &Manifest) -> Result<(), StepError> {
        let started = Instant::now();
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

    fn write_spec(&self, key: &Key, document: &serde_json::Value) -> Result<PathBuf, StepError> {
        let path = self.spec_file(key);
        let text = serde_json::to_vec_pretty(document).unwrap_or_default();
        state::write_atomic(&path, &text)?;
        Ok(path)
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
            && stored.inputs_digest.as_deref() == Some(inputs.as_str())
            && let Some(a) = stored.object.status.as_ref().and_then(|s| s.artifact.as_ref())
            && self.artifacts.join(&a.uri).join("train.jsonl").is_file()
        {
            self.datasets.insert(m.key.clone(), stored.object);
            return Ok(Done::Skipped);
        }
        let doc = spec_document(ds, &spec, &BTreeMap::new());
        let spec_path = self.write_spec(&m.key, &doc)?;
        let result = crate::dataset::run(crate::dataset::Args {
            spec: Some(spec_path),
            artifacts: self.artifacts.clone(),
            input: Vec::new(),
            out: None,
            format: crate::dataset::FormatArg::Auto,
            min_score: None,
            near_threshold: None,
            eval_fraction: None,
            seed: None,
            openai: false,
            termination_log: PathBuf::new(),
        })
        .map_err(|e| failed(&m.key, e))?;
        // The operator reads the same result from the Job's termination message; go through JSON as it does.
        let stats: DatasetStats = serde_json::to_value(&result.stats)
            .and_then(serde_json::from_value)
            .map_err(|e| failed(&m.key, format!("dataset result: {e}")))?;
        let mut status = DatasetStatus {
            artifact: Some(ArtifactRef {
                uri: result.artifact.uri.clone(),
                digest: result.artifact.digest.clone(),
            }),
            ..Default::default()
        };
        let message = format!(
            "kept {} of {} examples ({} train, {} eval)",
            stats.kept, stats.input, stats.train, stats.eval
        );
        status.stats = Some(stats);
        status.phase = Some("Succeeded".into());
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
        let mut fp = Fingerprint::new("TrainingRun/1");
        fp.text(&inputs_digest(&tr.spec, &dataset));
        if let Some(p) = &tr.spec.base_model.path {
            let abs = self.absolute(m, p)?;
            fp.model_dir(Path::new(&abs))?;
            spec.base_model.path = Some(abs);
        }
        let inputs = fp.finish();
        if let Some(stored) = state::read::<TrainingRun>(&self.artifacts, &m.key)
            && !self.args.force
            && stored.inputs_digest.as_deref() == Some(inputs.as_str())
            && self.outputs_intact(&stored.object)
        {
            self.runs.insert(m.key.clone(), stored.object);
            return Ok(Done::Skipped);
        }
        let annotations = BTreeMap::from([
            (DATASET_URI_ANNOTATION.to_string(), dataset.uri.clone()),
            (DATASET_DIGEST_ANNOTATION.to_string(), dataset.digest.clone()),
        ]);
        let doc = spec_document(tr, &spec, &annotations);
        let spec_path = self.write_spec(&m.key, &doc)?;
        let trained = train(&spec_path, &self.artifacts, &self.args).map_err(|e| failed(&m.key, e))?;
        let quantized = crate::gguf::cli::quantize_training_run(&spec_path, &self.artifacts)
            .map_err(|e| failed(&m.key, format!("quantize: {e}")))?;
        let mut status = TrainingRunStatus {
            attempt: 1,
            inputs_digest: Some(inputs_digest(&tr.spec, &dataset)),
            dataset: Some(dataset),
            final_loss: trained.final_loss,
            eval_loss: trained.eval_loss,
            artifacts: Some(TrainingArtifacts {
                adapter: Some(trained.adapter.clone()),
                merged: trained.merged.clone(),
                gguf: quantized.gguf,
            }),
            ..Default::default()
        };
        let message = format!(
            "trained {} steps, final loss {}, eval loss {}; {} GGUF file(s)",
            trained.steps,
            fmt_loss(trained.final_loss),
            fmt_loss(trained.eval_loss),
            status.artifacts.as_ref().map_or(0, |a| a.gguf.len())
        );
        status.phase = Some("Succeeded".into());
        set_health(
            &mut status.conditions,
            Health::Ready,
            reason::SUCCEEDED,
            &message,
            Some(1),
            &now(),
        );
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
                .all(|g| state::sha256_file(&self.artifacts.join(&g.uri)).is_ok_and(|d| d == g.digest))
    }

    fn model_serving(&mut self, m: &Manifest, ms: &ModelServing) -> Result<Done, StepError> {
        let run_key = ms.spec.model.training_run_ref.as_ref().map(|r| Key {
            kind: "TrainingRun",
            namespace: m.key.namespace.clone(),
            name: r.name.clone(),
        });
        let run = run_key.as_ref().and_then(|k| self.runs.get(k));
        let mut model =
            crate::controller::model_serving::reconcile::wanted_model(ms, run).map_err(|e| failed(&m.key, e))?;
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
                sha256: model.digest.trim_start_matches("sha256:").to_string(),
            }),
        };
        let doc = spec_document(ms, &spec, &BTreeMap::new());
        let spec_path = self.write_spec(&m.key, &doc)?;
        let port_offset = self.servings.len() as u16;
        let mut addr = self.args.addr;
        addr.set_port(addr.port().saturating_add(port_offset));
        let inputs = Fingerprint::new("ModelServing/1")
            .json(&ms.spec)
            .text(&model.digest)
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
            ("Ready", Health::Ready, reason::MODEL_SERVED)
        } else {
            ("Pending", Health::Reconciling, reason::ROLLING_OUT)
        };
        status.phase = Some(phase.into());
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
            let args = crate::serve::ServeArgs {
                models: Vec::new(),
                config: None,
                spec: Some(s.spec_path.clone()),
                artifacts: self.artifacts.clone(),
                addr: s.addr,
                parallel: 4,
                max_queue: 512,
                // The spec's modelfile.parameters.num_ctx sizes the context, as in a cluster.
                num_ctx: None,
                threads: self.args.threads,
                batch: 512,
                timeout_secs: 600,
                flash_attention: Default::default(),
            };
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
            super::view::serving_help(s);
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

fn fmt_loss(loss: Option<f64>) -> String {
    loss.map_or_else(|| "n/a".into(), |l| format!("{l:.4}"))
}

/// The train worker, in-process, on the spec.json just written. Its result is the termination message the
/// operator would read.
fn train(spec: &Path, artifacts: &Path, args: &RunArgs) -> Result<TrainResult, String> {
    let train_args = crate::train::TrainArgs {
        spec: spec.to_path_buf(),
        artifacts: artifacts.to_path_buf(),
        dataset: None,
        device: args.device.clone(),
        threads: args.threads,
        // Port 0: the OS picks a free one, so a local run never collides with anything on 9090.
        metrics_addr: "127.0.0.1:0".into(),
        no_progress: false,
        // Not /dev/termination-log: the status file is where a local run reports.
        termination_log: PathBuf::new(),
    };
    crate::train::run::run(&train_args).map_err(|e| e.to_string())
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
