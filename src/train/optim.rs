//! AdamW with decoupled weight decay, gradient clipping, and the warm-up + decay schedule.
//! Written out (rather than tch's optimizer) so the moments can be checkpointed and restored exactly.

pub use crate::api::training_run::LrScheduler as Scheduler;
use tch::{Kind, Tensor};

/// Learning rate for optimizer step `step` (0-based), as transformers' schedulers give it: linear warm-up
/// from 0 over `warmup` steps, then linear or half-cosine decay to 0 at `total`.
pub fn learning_rate(base: f64, step: usize, warmup: usize, total: usize, kind: Scheduler) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    match kind {
        Scheduler::Linear => base * (1.0 - progress).max(0.0),
        Scheduler::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Updates applied so far (bias correction uses it).
    pub t: i64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl AdamW {
    pub fn new(params: &[&Tensor], weight_decay: f64) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            m: params.iter().map(|p| p.zeros_like()).collect(),
            v: params.iter().map(|p| p.zeros_like()).collect(),
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before clipping.
    pub fn clip_grad_norm(params: &[&Tensor], max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
            if grads.is_empty() {
                return 0.0;
            }
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            if max_norm > 0.0 {
                let coef = (max_norm / (total + 1e-6)).min(1.0);
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            }
            total
        })
    }

    /// One update with learning rate `lr` (the same arithmetic as torch.optim.AdamW, foreach=False).
    pub fn step(&mut self, params: &[&Tensor], lr: f64) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        tch::no_grad(|| {
            for ((p, m), v) in params.iter().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                let _ = m.lerp_(&g, 1.0 - self.beta1);
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.addcmul_(&g, &g.g_mul_scalar(1.0 - self.beta2));
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.addcdiv_(&(&*m * (-lr / bc1)), &denom);
            }
        });
    }

    pub fn zero_grad(params: &[&Tensor]) {
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_matches_transformers() {
        // get_linear_schedule_with_warmup(warmup=10, total=100) at base 2e-4.
        assert_eq!(learning_rate(2e-4, 0, 10, 100, Scheduler::Linear), 0.0);
        assert!((learning_rate(2e-4, 5, 10, 100, Scheduler::Linear) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(2e-4, 10, 10, 100, Scheduler::Linear) - 2e-4).abs() < 1e-12);
        assert!((learning_rate(2e-4, 55, 10, 100, Scheduler::Linear) - 1e-4).abs() < 1e-12);
        assert_eq!(learning_rate(2e-4, 100, 10, 100, Scheduler::Linear), 0.0);
    }

    #[test]
    fn cosine_schedule_halves_at_midpoint() {
        assert!((learning_rate(1.0, 55, 10, 100, Scheduler::Cosine) - 0.5).abs() < 1e-12);
        assert!(learning_rate(1.0, 100, 10, 100, Scheduler::Cosine).abs() < 1e-12);
    }

    #[test]
    fn adamw_matches_closed_form_first_step() {
        // First AdamW step: p ← p(1 − lr·wd) − lr·g/(|g| + eps') = p(1 − lr·wd) − lr·sign(g) (approx).
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let loss = (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float);
        loss.backward();
        let mut opt = AdamW::new(&[&p], 0.1);
        opt.step(&[&p], 0.01);
        let got: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        let want = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let p = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        (&p * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        let before = AdamW::clip_grad_norm(&[&p], 1.0);
        assert!((before - 5.0).abs() < 1e-5);
        let after = p.grad().norm().double_value(&[]);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }
}
