//! Where a worker Job stands, read from the Job and its Pods. Pure: the reconcilers pass what they fetched.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::de::DeserializeOwned;

/// The outcome of a worker Job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// Not started or Pods not yet scheduled.
    Pending,
    /// A Pod runs.
    Running,
    /// Finished; the JSON results of the named containers, in Pod order (init containers first).
    Succeeded,
    /// Gave up; why, in words a user can act on (the Pod's reason and message).
    Failed(String),
}

/// Reads the Job's conditions.
pub fn outcome(job: &Job, pods: &[Pod]) -> JobOutcome {
    let status = job.status.as_ref();
    let condition = |t: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == t && c.status == "True"))
    };
    if condition("Complete").is_some() || condition("SuccessCriteriaMet").is_some() {
        return JobOutcome::Succeeded;
    }
    if let Some(failed) = condition("Failed").or_else(|| condition("FailureTarget")) {
        let pod_reason = pods.iter().rev().find_map(pod_failure);
        let job_reason = format!(
            "{}: {}",
            failed.reason.as_deref().unwrap_or("Failed"),
            failed.message.as_deref().unwrap_or("")
        );
        return JobOutcome::Failed(pod_reason.unwrap_or(job_reason));
    }
    if status.and_then(|s| s.active).unwrap_or(0) > 0 && pods.iter().any(is_running) {
        JobOutcome::Running
    } else {
        JobOutcome::Pending
    }
}

/// Whether one of the Pod's containers runs. A kubelet reports a Pod `Pending` until its init containers are
/// done, so a TrainingRun's `train` step (an init container) runs inside a Pending Pod.
pub fn is_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => true,
        Some("Pending") => status
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())),
        _ => false,
    }
}

fn all_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let s = pod.status.as_ref();
    let init = s.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
    let main = s.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
    init.chain(main)
}

/// The first container that terminated unsuccessfully: `container: reason (exit code): message`.
pub fn pod_failure(pod: &Pod) -> Option<String> {
    all_statuses(pod).find_map(|c| {
        let t = c.state.as_ref()?.terminated.as_ref()?;
        (t.exit_code != 0).then(|| {
            let message = t.message.as_deref().unwrap_or("").trim();
            let last_line = message.lines().last().unwrap_or("");
            format!(
                "{}: {} (exit code {}): {}",
                c.name,
                t.reason.as_deref().unwrap_or("Error"),
                t.exit_code,
                last_line
            )
        })
    })
}

/// Pods replaced because they were preempted or evicted (condition `DisruptionTarget`).
pub fn disrupted_pods(pods: &[Pod]) -> u32 {
    let disrupted = |p: &&Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True"))
    };
    pods.iter().filter(disrupted).count() as u32
}

/// Errors reading a worker's result.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResultError {
    #[error("no succeeded Pod has a terminated container {container:?}")]
    Missing { container: String },
    #[error("container {container:?} result is not the expected JSON: {reason}")]
    Malformed { container: String, reason: String },
}

/// The JSON result container `container` wrote to its termination message (the last line is the result;
/// workers also print it to stdout, so with `FallbackToLogsOnError` it is still the last line).
pub fn container_result<T: DeserializeOwned>(pods: &[Pod], container: &str) -> Result<T, ResultError> {
    let message = pods
        .iter()
        .flat_map(all_statuses)
        .filter(|c| c.name == container)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code == 0)
        .find_map(|t| t.message.clone())
        .ok_or_else(|| ResultError::Missing {
            container: container.to_string(),
        })?;
    let line = message.trim().lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| ResultError::Malformed {
        container: container.to_string(),
        reason: e.to_string(),
    })
}

/// The Pod whose trainer is running now (for scraping its metrics): its IP.
pub fn running_pod_ip(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter(|p| is_running(p))
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::contract::{DatasetResult, Digest};

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).expect("job")
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).expect("pod")
    }

    fn terminated(name: &str, code: i32, reason: &str, message: &str) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}})
    }

    #[test]
    fn succeeded_job_yields_the_workers_result() {
        let digest = Digest::of("1");
        let result = format!(
            r#"{{"artifact":{{"uri":"datasets/ai/fw/{}","digest":"{digest}"}},"stats":{{"input":10,"kept":8,"train":7,"eval":1}}}}"#,
            digest.hex()
        );
        let pods = [pod(
            json!({"phase": "Succeeded", "containerStatuses": [terminated("dataset", 0, "Completed", &format!("log line\n{result}"))]}),
        )];
        let j = job(json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}));
        assert_eq!(outcome(&j, &pods), JobOutcome::Succeeded);
        let r: DatasetResult = container_result(&pods, "dataset").expect("result");
        assert_eq!((r.artifact.digest, r.stats.kept, r.stats.eval), (digest, 8, 1));
    }

    #[test]
    fn failed_job_names_the_pod_reason() {
        let pods = [pod(
            json!({"phase": "Failed", "initContainerStatuses": [terminated("train", 137, "OOMKilled", "")]}),
        )];
        let j = job(
            json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        assert_eq!(
            outcome(&j, &pods),
            JobOutcome::Failed("train: OOMKilled (exit code 137): ".into())
        );
        assert_eq!(
            outcome(&j, &[]),
            JobOutcome::Failed("BackoffLimitExceeded: Job has reached the specified backoff limit".into())
        );
    }

    #[test]
    fn malformed_result_is_an_error_not_a_panic() {
        let pods = [pod(
            json!({"containerStatuses": [terminated("dataset", 0, "Completed", "not json")]}),
        )];
        assert!(matches!(
            container_result::<DatasetResult>(&pods, "dataset"),
            Err(ResultError::Malformed { .. })
        ));
        assert_eq!(
            container_result::<DatasetResult>(&pods, "other"),
            Err(ResultError::Missing {
                container: "other".into()
            })
        );
    }

    /// As kube-apiserver holds it while `train` runs: the Pod is Pending until its init containers are done.
    #[test]
    fn a_pod_running_its_init_container_is_running() {
        let running = json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}});
        let training = pod(json!({"phase": "Pending", "podIP": "10.0.0.8",
            "initContainerStatuses": [{"name": "train", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": running}],
            "containerStatuses": [{"name": "quantize", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                                   "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        assert_eq!(
            outcome(&job(json!({"active": 1})), std::slice::from_ref(&training)),
            JobOutcome::Running
        );
        assert_eq!(
            running_pod_ip(std::slice::from_ref(&training)).as_deref(),
            Some("10.0.0.8")
        );
        let scheduled = pod(
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "train", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(outcome(&job(json!({"active": 1})), &[scheduled]), JobOutcome::Pending);
    }

    #[test]
    fn preempted_pods_are_counted_and_the_running_one_is_found() {
        let pods = [
            pod(json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]})),
            pod(json!({"phase": "Running", "podIP": "10.0.0.7"})),
        ];
        assert_eq!(disrupted_pods(&pods), 1);
        assert_eq!(running_pod_ip(&pods).as_deref(), Some("10.0.0.7"));
        assert_eq!(outcome(&job(json!({"active": 1})), &pods), JobOutcome::Running);
        assert_eq!(outcome(&job(json!({"active": 1})), &pods[..1]), JobOutcome::Pending);
    }
}
