//! Prometheus metrics of the server (prefix `fireweave_serve_`). Labels are endpoint names and status codes,
//! never error text.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub queue_depth: IntGauge,
    pub active_slots: IntGauge,
    pub ttft: HistogramVec,
    pub tokens_per_second: Histogram,
    pub prompt_tokens: IntCounter,
    pub eval_tokens: IntCounter,
    pub cancelled: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("fireweave_serve".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "HTTP requests by endpoint and status code"),
            &["endpoint", "status"],
        )?;
        let queue_depth = IntGauge::new("queue_depth", "Generation requests waiting for a slot")?;
        let active_slots = IntGauge::new("active_slots", "Sequences being decoded")?;
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "time_to_first_token_seconds",
                "From admission to the first sampled token",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["endpoint"],
        )?;
        let tokens_per_second = Histogram::with_opts(
            HistogramOpts::new("tokens_per_second", "Generation speed of each finished request")
                .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]),
        )?;
        let prompt_tokens = IntCounter::new("prompt_tokens_total", "Prompt tokens evaluated")?;
        let eval_tokens = IntCounter::new("eval_tokens_total", "Tokens generated")?;
        let cancelled = IntCounter::new(
            "cancelled_total",
            "Requests whose slot was freed early (client disconnected or timed out)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(active_slots.clone()))?;
        registry.register(Box::new(ttft.clone()))?;
        registry.register(Box::new(tokens_per_second.clone()))?;
        registry.register(Box::new(prompt_tokens.clone()))?;
        registry.register(Box::new(eval_tokens.clone()))?;
        registry.register(Box::new(cancelled.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            queue_depth,
            active_slots,
            ttft,
            tokens_per_second,
            prompt_tokens,
            eval_tokens,
            cancelled,
        })
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for text format except on invalid metric families, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
