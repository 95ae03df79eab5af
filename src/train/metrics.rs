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
    /// Fractional: 1.5 is half-way through the second epoch (what status.progress.epoch shows).
    pub epoch: Gauge,
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
            epoch: float("fireweave_train_epoch", "Epochs completed, fractional"),
            registry,
            step,
            total_steps,
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
    /// synchronous; a failure to bind is logged, not fatal (metrics are an aid, not the job). Returns the
    /// bound address once listening (None when binding failed).
    pub fn serve(&self, addr: &str) -> Option<std::net::SocketAddr> {
        let me = self.clone();
        let addr = addr.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(None);
                    return tracing::warn!(error = %e, "metrics runtime failed to start");
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(&addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(None);
                        return tracing::warn!(%addr, error = %e, "metrics endpoint not started");
                    }
                };
                let local = listener.local_addr().ok();
                let _ = tx.send(local);
                tracing::info!(addr = ?local, "metrics on /metrics");
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
        rx.recv().ok().flatten()
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
