//! kstatus conditions: `Ready`, `Reconciling`, `Stalled`, with reasons as constants so that dashboards,
//! `kubectl wait` and Argo CD health checks can rely on them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The resource does what it was asked to (artifact written, model served).
pub const READY: &str = "Ready";
/// The operator is moving the resource towards its spec (a Job runs, a rollout progresses, a dependency is awaited).
pub const RECONCILING: &str = "Reconciling";
/// Progress stopped and needs a person: invalid spec, failed Job. It clears when the spec changes.
pub const STALLED: &str = "Stalled";

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

/// A status with a phase and kstatus conditions (all three resources have one).
pub trait Phased {
    fn phase(&self) -> Option<&str>;
    fn conditions(&self) -> &[Condition];
}

macro_rules! phased {
    ($($status:ty),*) => {$(
        impl Phased for $status {
            fn phase(&self) -> Option<&str> {
                self.phase.as_deref()
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
