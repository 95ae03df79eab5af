//! The children whose state the reconciles read, as the watch caches keep them: deserialized straight from the
//! watch into types that hold only what a reconcile reads, and handed to the reconciles as the k8s-openapi
//! object rebuilt from that.
//!
//! k8s-openapi's types hold every field of the API inline, set or not: a `Job` is 2,592 bytes before any of
//! its heap, a `Deployment` 2,400, a `Pod` 2,176, and each of a Pod's containers 2,120 (each container status
//! 752). Trimming the fields after deserializing, as the stores did, freed their contents but not that room:
//! under the 2,000-resource benchmark the stores still held 35 MiB of the operator's 50 MiB peak heap, 11 MiB
//! of it the fixed size of the objects and 10 MiB the Job Pods' empty containers and statuses.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Deserialize;

/// `kube::Resource` of a slim type: the API coordinates of the kind it stands for, its own metadata.
macro_rules! resource_of {
    ($slim:ty, $kind:ty) => {
        impl Resource for $slim {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::kind(&())
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::group(&())
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::version(&())
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::plural(&())
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A kind whose status a reconcile reads, kept as its metadata and status (`$to` rebuilds the object).
macro_rules! metadata_and_status {
    ($(#[$doc:meta])* $slim:ident, $kind:ident, $status:ty, $to:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, Deserialize)]
        pub struct $slim {
            pub metadata: ObjectMeta,
            pub status: Option<$status>,
        }
        resource_of!($slim, $kind);

        impl $slim {
            pub fn $to(&self) -> $kind {
                $kind {
                    metadata: self.metadata.clone(),
                    spec: None,
                    status: self.status.clone(),
                }
            }
        }
    };
}

metadata_and_status!(
    /// A Job: its metadata and status (`job_status` reads the conditions and the active count).
    SlimJob, Job, JobStatus, to_job
);
metadata_and_status!(
    /// A Deployment: its metadata (the generation) and status (the rollout's replica counts).
    SlimDeployment, Deployment, DeploymentStatus, to_deployment
);

/// A worker Job's Pod as `job_status` and the TrainingRun reconcile read it: of its spec the container names
/// (init containers first: the order of the steps); of its status the phase, the conditions (eviction's
/// `DisruptionTarget`), the Pod IP (the trainer's metrics) and each container's state — running, or
/// terminated with exit code, reason and message (a worker's result or its failure).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct JobPod {
    pub metadata: ObjectMeta,
    spec: Option<Steps>,
    status: Option<StepsStatus>,
}
resource_of!(JobPod, Pod);

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Steps {
    init_containers: Option<Vec<Named>>,
    #[serde(default)]
    containers: Vec<Named>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Named {
    name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepsStatus {
    phase: Option<String>,
    conditions: Option<Vec<PodCondition>>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    init_container_statuses: Option<Vec<StepStatus>>,
    container_statuses: Option<Vec<StepStatus>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct StepStatus {
    name: String,
    state: Option<StepState>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct StepState {
    running: Option<serde::de::IgnoredAny>,
    terminated: Option<Terminated>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Terminated {
    exit_code: i32,
    reason: Option<String>,
    message: Option<String>,
}

impl JobPod {
    /// The Pod with what this kept of it and nothing else.
    pub fn to_pod(&self) -> Pod {
        let containers = |cs: &[Named]| -> Vec<Container> {
            cs.iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    ..Default::default()
                })
                .collect()
        };
        let statuses = |cs: &[StepStatus]| -> Vec<ContainerStatus> {
            cs.iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    state: c.state.as_ref().map(|s| ContainerState {
                        running: s.running.map(|_| Default::default()),
                        terminated: s.terminated.as_ref().map(|t| ContainerStateTerminated {
                            exit_code: t.exit_code,
                            reason: t.reason.clone(),
                            message: t.message.clone(),
                            ..Default::default()
                        }),
                        waiting: None,
                    }),
                    ..Default::default()
                })
                .collect()
        };
        Pod {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|s| PodSpec {
                init_containers: s.init_containers.as_deref().map(containers),
                containers: containers(&s.containers),
                ..Default::default()
            }),
            status: self.status.as_ref().map(|s| PodStatus {
                phase: s.phase.clone(),
                conditions: s.conditions.clone(),
                pod_ip: s.pod_ip.clone(),
                init_container_statuses: s.init_container_statuses.as_deref().map(statuses),
                container_statuses: s.container_statuses.as_deref().map(statuses),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerStateRunning, EnvVar, PodCondition};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn terminated(code: i32, message: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                message: Some(message.into()),
                container_id: Some("containerd://abc".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A Pod as the API serves it, read through the slim type: what the reconciles read is there, the rest
    /// is not, and the slim type is a fraction of the Pod's size.
    #[test]
    fn a_job_pod_keeps_the_steps_states_and_nothing_else() {
        let container = |name: &str| Container {
            name: name.into(),
            image: Some("ghcr.io/fireweave/fireweave-ai-trainer:0.1.0".into()),
            args: Some(vec!["train".into(), "--spec".into(), "/etc/fireweave/spec.json".into()]),
            env: Some(vec![EnvVar {
                name: "HF_HOME".into(),
                value: Some("/artifacts/hf".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let status = |name: &str, state: ContainerState| ContainerStatus {
            name: name.into(),
            image: "ghcr.io/fireweave/fireweave-ai-trainer:0.1.0".into(),
            restart_count: 2,
            ready: false,
            state: Some(state),
            ..Default::default()
        };
        let created = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("run-1-a1-x7k2p".into()),
                namespace: Some("team-a".into()),
                labels: Some([("job-name".to_string(), "run-1-a1".to_string())].into()),
                annotations: Some([("note".to_string(), "kept in the metadata".to_string())].into()),
                creation_timestamp: Some(created.clone()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![container("train"), container("quantize")]),
                containers: vec![container("evaluate")],
                node_name: Some("gpu-node-1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                pod_ip: Some("10.0.0.7".into()),
                host_ip: Some("192.168.1.1".into()),
                conditions: Some(vec![PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("PreemptionByScheduler".into()),
                    ..Default::default()
                }]),
                init_container_statuses: Some(vec![
                    status("train", terminated(0, "{\"steps\": 3}")),
                    status(
                        "quantize",
                        ContainerState {
                            running: Some(ContainerStateRunning {
                                started_at: Some(created.clone()),
                            }),
                            ..Default::default()
                        },
                    ),
                ]),
                container_statuses: Some(vec![status("evaluate", ContainerState::default())]),
                ..Default::default()
            }),
        };
        let slim: JobPod = serde_json::from_value(serde_json::to_value(&pod).unwrap()).unwrap();
        let back = slim.to_pod();

        assert_eq!(back.metadata, pod.metadata);
        let spec = back.spec.as_ref().unwrap();
        let names = |cs: &[Container]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(spec.init_containers.as_deref().unwrap()), ["train", "quantize"]);
        assert_eq!(names(&spec.containers), ["evaluate"]);
        assert!(spec.containers[0].image.is_none() && spec.node_name.is_none());
        let status = back.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.7"));
        assert!(status.host_ip.is_none());
        assert_eq!(status.conditions, pod.status.as_ref().unwrap().conditions);
        let init = status.init_container_statuses.as_ref().unwrap();
        let train = init[0].state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (train.exit_code, train.reason.as_deref(), train.message.as_deref()),
            (0, Some("Completed"), Some("{\"steps\": 3}"))
        );
        assert!(train.container_id.is_none() && init[0].restart_count == 0);
        assert!(init[1].state.as_ref().unwrap().running.is_some());
        let main = status.container_statuses.as_ref().unwrap();
        assert_eq!(main[0].name, "evaluate");
        let waiting = main[0].state.as_ref().unwrap();
        assert!(waiting.running.is_none() && waiting.terminated.is_none());

        // The steps' logic reads the rebuilt Pod as it read the API's.
        let pods = [back];
        assert!(crate::controller::job_status::is_running(&pods[0]));
        assert_eq!(crate::controller::job_status::disrupted_pods(&pods), 1);
        assert_eq!(
            crate::controller::job_status::running_pod_ip(&pods).as_deref(),
            Some("10.0.0.7")
        );
        assert!(std::mem::size_of::<JobPod>() * 3 < std::mem::size_of::<Pod>());
    }

    #[test]
    fn a_job_and_a_deployment_keep_metadata_and_status() {
        let job = Job {
            metadata: ObjectMeta {
                name: Some("run-1-a1".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(Default::default()),
            status: Some(JobStatus {
                active: Some(1),
                ..Default::default()
            }),
        };
        let slim: SlimJob = serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
        assert_eq!(slim.to_job(), Job { spec: None, ..job });
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some("serve-1".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(Default::default()),
            status: Some(DeploymentStatus {
                observed_generation: Some(3),
                ready_replicas: Some(2),
                updated_replicas: Some(2),
                replicas: Some(2),
                ..Default::default()
            }),
        };
        let slim: SlimDeployment = serde_json::from_value(serde_json::to_value(&deployment).unwrap()).unwrap();
        assert_eq!(
            slim.to_deployment(),
            Deployment {
                spec: None,
                ..deployment
            }
        );
        assert!(std::mem::size_of::<SlimJob>() * 3 < std::mem::size_of::<Job>());
        assert!(std::mem::size_of::<SlimDeployment>() * 3 < std::mem::size_of::<Deployment>());
    }
}
