//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator replicas never reconcile at once.
//!
//! The holder renews the Lease every `duration / 3`; another replica takes it over only once `renewTime +
//! leaseDurationSeconds` has passed. Every write carries the Lease's `resourceVersion`, so when two replicas
//! race for an expired Lease the API server lets exactly one of them win (the other gets a 409 Conflict).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{PostParams, ResourceExt};

/// One replica's view of the Lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    /// How often the holder renews.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes or renews the Lease; `Ok(true)` while this replica holds it.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = crate::api::conditions::now().0;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(secs)) => renewed.0 + SignedDuration::from_secs(secs.into()) < now,
            _ => true,
        };
        if !ours && !expired && spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty()) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time } else { None };
        lease.spec = Some(self.spec(now, acquired, transitions));
        // replace() sends the resourceVersion we read: a concurrent writer makes this a 409, not a double leader.
        match self
            .api
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up on shutdown so the next replica need not wait for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await?
            && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            self.api
                .replace(&lease.name_any(), &PostParams::default(), &lease)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fake_api::FakeApiServer;

    fn election(fake: &FakeApiServer, who: &str) -> LeaderElection {
        LeaderElection::new(
            Api::namespaced(fake.client(), "fireweave-system"),
            "fireweave-ai-operator",
            who,
            Duration::from_secs(15),
        )
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_release_hands_over() {
        let fake = FakeApiServer::new();
        let (a, b) = (election(&fake, "pod-a"), election(&fake, "pod-b"));
        assert!(a.try_acquire().await.expect("create"));
        assert!(!b.try_acquire().await.expect("held by a"));
        assert!(a.try_acquire().await.expect("renew"));
        let path = "/apis/coordination.k8s.io/v1/namespaces/fireweave-system/leases/fireweave-ai-operator";
        let stored = fake.get(path).expect("lease stored");
        assert_eq!(stored["spec"]["holderIdentity"], "pod-a");
        assert_eq!(stored["spec"]["leaseDurationSeconds"], 15);
        a.release().await.expect("release");
        assert!(b.try_acquire().await.expect("free now"));
        assert_eq!(fake.get(path).expect("lease")["spec"]["leaseTransitions"], 1);
        assert!(!a.try_acquire().await.expect("held by b"));
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_a_stale_write_loses() {
        let fake = FakeApiServer::new();
        let mut lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "fireweave-ai-operator", "namespace": "fireweave-system"},
            "spec": {"holderIdentity": "pod-old", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}
        });
        fake.insert(lease.clone());
        assert!(election(&fake, "pod-b").try_acquire().await.expect("expired"));
        // A write based on an old resourceVersion is refused: the fake checks it like the API server does.
        lease["metadata"]["resourceVersion"] = serde_json::json!("1");
        let api: Api<Lease> = Api::namespaced(fake.client(), "fireweave-system");
        let stale: Lease = serde_json::from_value(lease).expect("lease");
        let err = api
            .replace("fireweave-ai-operator", &PostParams::default(), &stale)
            .await
            .expect_err("conflict");
        assert!(matches!(err, kube::Error::Api(e) if e.code == 409));
    }
}
