//! kstatus conditions: `Ready`, `Reconciling`, `Stalled`, with reasons as constants so that dashboards,
//! `kubectl wait` and Argo CD health checks can rely on them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The resource does what it was asked to (artifact written, model served).
pub const READY: &str = "Ready";
/// The operator is moving the resource towards its spec (a Job runs, a rollout progresses, a dependency is awaited).
pub const RECONCILING: &str = "Reconciling";
/// Progress stopped and needs a person: invalid spec, failed Job. It clears when the spec changes.
pub const STALLED: &str = "Stalled";

/// A TrainingRun's evaluation gate: True when its newest model passed, False (reason `GateFailed`, the
/// failing figures in the message) when it did not. Absent until the evaluation ran.
pub const EVALUATED: &str = "Evaluated";

/// Condition reasons. CamelCase, fixed: they are API.
pub mod reason {
    pub const SUCCEEDED: &str = "Succeeded";
    pub const JOB_RUNNING: &str = "JobRunning";
    pub const JOB_PENDING: &str = "JobPending";
    pub const JOB_FAILED: &str = "JobFailed";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const WAITING_FOR_DATASET: &str = "WaitingForDataset";
    pub const WAITING_FOR_TRAINING_RUN: &str = "WaitingForTrainingRun";
    pub const TRAINING: &str = "Training";
    pub const QUANTIZING: &str = "Quantizing";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const MODEL_SERVED: &str = "ModelServed";
    pub const RESULT_UNREADABLE: &str = "ResultUnreadable";
    pub const EVALUATING: &str = "Evaluating";
    pub const GATE_PASSED: &str = "GatePassed";
    pub const GATE_FAILED: &str = "GateFailed";
}

/// Sets condition `type_` on `conditions`, keeping `lastTransitionTime` unless the status flips, so a status
/// that did not change compares equal and is not written again.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The three kstatus conditions at once, from one summary of where a resource stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Ready,
    Reconciling,
    Stalled,
}

/// Writes `Ready`/`Reconciling`/`Stalled` consistently: exactly one of them is True.
pub fn set_health(
    conditions: &mut Vec<Condition>,
    health: Health,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let msg = |is: bool| if is { message.to_string() } else { String::new() };
    set_condition(
        conditions,
        READY,
        health == Health::Ready,
        reason,
        msg(true),
        generation,
        now,
    );
    set_condition(
        conditions,
        RECONCILING,
        health == Health::Reconciling,
        reason,
        msg(health == Health::Reconciling),
        generation,
        now,
    );
    set_condition(
        conditions,
        STALLED,
        health == Health::Stalled,
        reason,
        msg(health == Health::Stalled),
        generation,
        now,
    );
}

/// The clock every status is stamped with (controllers and `fireweave-ai run` alike); pure code takes the
/// time as an argument instead.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Where a resource stands, in one word (`status.phase`, the `Phase` printer column). Conditions carry the
/// detail; the phase is for people and dashboards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Waiting: for a Job to start, for a dependency, for a first model.
    Pending,
    /// A Dataset's Job is building.
    Running,
    /// A TrainingRun's Job is in its `train` container.
    Training,
    /// A TrainingRun's Job is writing GGUF files.
    Quantizing,
    /// A TrainingRun's Job is measuring the GGUF files on the eval split.
    Evaluating,
    /// Done (Dataset, TrainingRun).
    Succeeded,
    /// Given up; conditions say why.
    Failed,
    /// A ModelServing's Deployment is rolling a model out.
    RollingOut,
    /// Every replica of a ModelServing serves the current model.
    Serving,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Pending,
        Phase::Running,
        Phase::Training,
        Phase::Quantizing,
        Phase::Evaluating,
        Phase::Succeeded,
        Phase::Failed,
        Phase::RollingOut,
        Phase::Serving,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Training => "Training",
            Phase::Quantizing => "Quantizing",
            Phase::Evaluating => "Evaluating",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::RollingOut => "RollingOut",
            Phase::Serving => "Serving",
        }
    }

    /// Whether the resource has stopped moving until its spec changes.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }

    /// Whether reaching this phase is worth an Event: an end (`Succeeded`, `Failed`) or a rollout done
    /// (`Serving`).
    pub fn ends_a_step(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Serving)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown phase {s:?}")))
    }
}

/// A plain string in the CRD (as it always was): phases are added over time, and an old operator reading a
/// newer status must not fail validation on a value it does not know.
impl schemars::JsonSchema for Phase {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Phase".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

/// A status with a phase and kstatus conditions (all three resources have one).
pub trait Phased {
    fn phase(&self) -> Option<Phase>;
    fn conditions(&self) -> &[Condition];
}

macro_rules! phased {
    ($($status:ty),*) => {$(
        impl Phased for $status {
            fn phase(&self) -> Option<Phase> {
                self.phase
            }
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
        }
    )*};
}
phased!(
    super::DatasetStatus,
    super::TrainingRunStatus,
    super::ModelServingStatus
);

/// The message of whichever of `Ready`/`Reconciling`/`Stalled` is True (what an Event about it should say).
pub fn health_message(conditions: &[Condition]) -> String {
    conditions
        .iter()
        .find(|c| c.status == "True" && [READY, RECONCILING, STALLED].contains(&c.type_.as_str()))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Whether condition `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        set_health(
            &mut c,
            Health::Reconciling,
            reason::JOB_RUNNING,
            "job running",
            Some(1),
            &at(10),
        );
        set_health(
            &mut c,
            Health::Reconciling,
            reason::JOB_RUNNING,
            "job running",
            Some(2),
            &at(20),
        );
        let rec = c.iter().find(|c| c.type_ == RECONCILING).expect("present");
        assert_eq!(rec.last_transition_time, at(10));
        assert_eq!(rec.observed_generation, Some(2));
        set_health(&mut c, Health::Ready, reason::SUCCEEDED, "done", Some(2), &at(30));
        let ready = c.iter().find(|c| c.type_ == READY).expect("present");
        assert_eq!((ready.status.as_str(), &ready.last_transition_time), ("True", &at(30)));
        assert!(!is_true(&c, RECONCILING) && !is_true(&c, STALLED));
    }
}
