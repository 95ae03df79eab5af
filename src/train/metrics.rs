//! Trainer metrics on `--metrics-addr` (Prometheus text format), names fixed by the operator contract.

use prometheus::{Encoder, Gauge, IntGauge, Registry, TextEncoder};

#[derive(Clone)]
pub struct TrainMetrics {
    registry: Registry,
    pub step: IntGauge,
    pub total_steps: IntGauge,
    pub loss: Gauge,
    pub eval_loss: Gauge,
    pub learning_rate: Gauge,
    pub tokens_per_second: Gauge,
    pub eta_seconds: Gauge,
    pub epoch: IntGauge,
}

impl TrainMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let int = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric name");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let step = int("fireweave_train_step", "Optimizer steps completed");
        let total_steps = int("fireweave_train_total_steps", "Optimizer steps this run will take");
        let epoch = int("fireweave_train_epoch", "Current epoch (0-based)");
        let float = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric name");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        TrainMetrics {
            loss: float("fireweave_train_loss", "Training loss of the last step"),
            eval_loss: float("fireweave_train_eval_loss", "Held-out loss at the last evaluation"),
            learning_rate: float("fireweave_train_learning_rate", "Learning rate of the last step"),
            tokens_per_second: float("fireweave_train_tokens_per_second", "Trained tokens per second"),
            eta_seconds: float("fireweave_train_eta_seconds", "Estimated seconds until training ends"),
            registry,
            step,
            total_steps,
            epoch,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding does not fail");
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Serves `/metrics` from a background thread for the life of the process. The training loop is
    /// synchronous; a failure to bind is logged, not fatal (metrics are an aid, not the job).
    pub fn serve(&self, addr: &str) {
        let me = self.clone();
        let addr = addr.to_owned();
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::warn!(error = %e, "metrics runtime failed to start"),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(&addr).await {
                    Ok(l) => l,
                    Err(e) => return tracing::warn!(%addr, error = %e, "metrics endpoint not started"),
                };
                tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(addr), "metrics on /metrics");
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let m = me.clone();
                        async move { m.render() }
                    }),
                );
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::warn!(error = %e, "metrics endpoint stopped");
                }
            });
        });
    }
}

impl Default for TrainMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exposes_contract_names() {
        let m = super::TrainMetrics::new();
        m.loss.set(1.5);
        let text = m.render();
        for name in [
            "fireweave_train_step",
            "fireweave_train_total_steps",
            "fireweave_train_loss 1.5",
            "fireweave_train_eval_loss",
            "fireweave_train_learning_rate",
            "fireweave_train_tokens_per_second",
            "fireweave_train_eta_seconds",
            "fireweave_train_epoch",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
