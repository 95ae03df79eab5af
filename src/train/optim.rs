//! AdamW with decoupled weight decay, gradient clipping, and the warm-up + decay schedule.
//! Written out (rather than tch's optimizer) so the moments can be checkpointed and restored exactly.

pub use crate::api::training_run::LrScheduler as Scheduler;
use tch::{Device, Kind, Tensor};

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

    /// Clips the gradients to global norm `max_norm` (when > 0), applies one AdamW update at `lr` and
    /// zeroes the gradients; returns the norm before clipping. Equal to [`Self::clip_grad_norm`], then
    /// [`Self::step`], then [`Self::zero_grad`], up to rounding.
    ///
    /// When every parameter, gradient and moment is a contiguous f32 CPU tensor (the CPU trainer), this is
    /// two passes over raw memory, one for the norm and one that updates and zeroes, on libtorch's thread
    /// count: the tensor-op path makes about a dozen passes over every adapter, with temporaries, which
    /// is a measurable share of a small model's step. Elements are independent and the norm is summed in
    /// f64 in a fixed order, so the result does not depend on the thread count.
    pub fn step_clipped(&mut self, params: &[&Tensor], lr: f64, max_norm: f64) -> f64 {
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
        self.step_clipped_on(params, lr, max_norm, threads)
    }

    /// [`Self::step_clipped`] with the fused path on `threads` worker threads.
    fn step_clipped_on(&mut self, params: &[&Tensor], lr: f64, max_norm: f64, threads: usize) -> f64 {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
        let mut slots = Vec::with_capacity(params.len());
        for (((p, g), m), v) in params.iter().zip(&grads).zip(&self.m).zip(&self.v) {
            if !g.defined() {
                continue;
            }
            match [*p, g, m, v].map(cpu_f32) {
                [Some(p), Some(g), Some(m), Some(v)] if p.1 == g.1 && p.1 == m.1 && p.1 == v.1 => {
                    slots.push(Slot {
                        p: p.0,
                        g: g.0,
                        m: m.0,
                        v: v.0,
                        len: p.1,
                    });
                }
                _ => {
                    let norm = Self::clip_grad_norm(params, max_norm);
                    self.step(params, lr);
                    Self::zero_grad(params);
                    return norm;
                }
            }
        }
        if slots.is_empty() {
            // As the tensor path: no gradient anywhere still counts as an update for bias correction.
            self.t += 1;
            return 0.0;
        }
        let workers = threads.clamp(1, slots.len());
        let parts = balanced(&slots, workers);
        // Pass 1: each tensor's sum of squares in f64, in element order; tensors combined in their order.
        let sums: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter()
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            // SAFETY: `cpu_f32` checked the tensor is a defined, contiguous f32 CPU tensor
                            // of `len` elements; nothing else touches it while the optimizer runs.
                            .map(|slot| {
                                unsafe { slot.g() }
                                    .iter()
                                    .map(|&x| f64::from(x) * f64::from(x))
                                    .sum::<f64>()
                            })
                            .collect::<Vec<f64>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("norm worker"))
                .collect()
        });
        let norm = sums.iter().sum::<f64>().sqrt();
        // The same coefficient torch.nn.utils.clip_grad_norm_ uses.
        let coef = if max_norm > 0.0 {
            (max_norm / (norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        let k = Consts {
            coef: coef as f32,
            decay: (1.0 - lr * self.weight_decay) as f32,
            w1: (1.0 - self.beta1) as f32,
            b2: self.beta2 as f32,
            c2: (1.0 - self.beta2) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: self.eps as f32,
            neg_step: (-lr / bc1) as f32,
        };
        // Pass 2: update parameter and moments, zero the gradient.
        std::thread::scope(|s| {
            for part in &parts {
                s.spawn(move || {
                    for slot in part.iter() {
                        // SAFETY: as above; the four buffers are distinct tensors.
                        let (p, g, m, v) = unsafe { slot.all() };
                        adamw_update(p, g, m, v, &k);
                    }
                });
            }
        });
        norm
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

/// (address, elements) of a defined, contiguous f32 CPU tensor.
fn cpu_f32(t: &Tensor) -> Option<(usize, usize)> {
    (t.defined() && t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous())
        .then(|| (t.data_ptr() as usize, t.numel()))
}

/// One parameter's four buffers, as addresses (tch tensors cannot cross threads by reference).
#[derive(Clone, Copy)]
struct Slot {
    p: usize,
    g: usize,
    m: usize,
    v: usize,
    len: usize,
}

impl Slot {
    /// # Safety
    /// The addresses must be live f32 buffers of `len` elements that nothing else accesses meanwhile.
    unsafe fn g(&self) -> &[f32] {
        unsafe { std::slice::from_raw_parts(self.g as *const f32, self.len) }
    }

    /// # Safety
    /// As [`Slot::g`], and the four buffers must not overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn all(&self) -> (&mut [f32], &mut [f32], &mut [f32], &mut [f32]) {
        let f = |a: usize| unsafe { std::slice::from_raw_parts_mut(a as *mut f32, self.len) };
        (f(self.p), f(self.g), f(self.m), f(self.v))
    }
}

/// Splits `slots` into at most `workers` consecutive runs of about equal element counts.
fn balanced(slots: &[Slot], workers: usize) -> Vec<&[Slot]> {
    let total: usize = slots.iter().map(|s| s.len).sum();
    let per = total.div_ceil(workers.max(1));
    let mut parts = Vec::with_capacity(workers);
    let (mut start, mut acc) = (0, 0);
    for (i, slot) in slots.iter().enumerate() {
        acc += slot.len;
        if acc >= per && parts.len() + 1 < workers {
            parts.push(&slots[start..=i]);
            (start, acc) = (i + 1, 0);
        }
    }
    if start < slots.len() {
        parts.push(&slots[start..]);
    }
    parts
}

/// The update's scalars, in f32 as torch applies a Python float to an f32 tensor.
#[derive(Clone, Copy)]
struct Consts {
    coef: f32,
    decay: f32,
    w1: f32,
    b2: f32,
    c2: f32,
    bc2_sqrt: f32,
    eps: f32,
    neg_step: f32,
}

/// torch.optim.AdamW's single-tensor arithmetic, element by element, on a gradient first scaled by the
/// clipping coefficient; the gradient is zeroed afterwards.
fn adamw_update(p: &mut [f32], g: &mut [f32], m: &mut [f32], v: &mut [f32], k: &Consts) {
    for (((p, g), m), v) in p.iter_mut().zip(g.iter_mut()).zip(m.iter_mut()).zip(v.iter_mut()) {
        let grad = *g * k.coef;
        *p *= k.decay;
        // lerp with weight < 0.5: m + w·(g − m).
        *m += k.w1 * (grad - *m);
        *v = *v * k.b2 + k.c2 * grad * grad;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p += k.neg_step * (*m / denom);
        *g = 0.0;
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

    /// Three steps of the fused path against clip + step + zero on the tensor-op path, with clipping
    /// active on one step and not on the others, on one, two and three workers.
    #[test]
    fn fused_step_matches_the_tensor_path() {
        for threads in [1, 2, 3] {
            tch::manual_seed(7);
            let shapes: [&[i64]; 3] = [&[16, 40], &[40, 16], &[3]];
            let init: Vec<Tensor> = shapes
                .iter()
                .map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)))
                .collect();
            let make = || -> Vec<Tensor> { init.iter().map(|t| t.copy().set_requires_grad(true)).collect() };
            let (a, b) = (make(), make());
            let (ra, rb): (Vec<&Tensor>, Vec<&Tensor>) = (a.iter().collect(), b.iter().collect());
            let (mut oa, mut ob) = (AdamW::new(&ra, 0.01), AdamW::new(&rb, 0.01));
            for (step, scale) in [(0, 0.01), (1, 10.0), (2, 0.5)] {
                let w: Vec<Tensor> = shapes
                    .iter()
                    .map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)))
                    .collect();
                for params in [&a, &b] {
                    let loss = params
                        .iter()
                        .zip(&w)
                        .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |acc, (p, w)| {
                            acc + (p * w).sum(Kind::Float) * scale
                        });
                    loss.backward();
                }
                let na = AdamW::clip_grad_norm(&ra, 1.0);
                oa.step(&ra, 1e-2);
                AdamW::zero_grad(&ra);
                let nb = ob.step_clipped_on(&rb, 1e-2, 1.0, threads);
                assert!((na - nb).abs() <= 1e-5 * na, "step {step}: norm {na} vs {nb}");
                for (x, y) in a.iter().zip(&b) {
                    let diff = (x - y).abs().max().double_value(&[]);
                    assert!(
                        diff < 1e-6,
                        "threads {threads} step {step}: parameters differ by {diff}"
                    );
                    assert_eq!(
                        y.grad().abs().sum(Kind::Float).double_value(&[]),
                        0.0,
                        "gradient not zeroed"
                    );
                }
            }
            for (ma, mb) in oa.m.iter().chain(&oa.v).zip(ob.m.iter().chain(&ob.v)) {
                assert!((ma - mb).abs().max().double_value(&[]) < 1e-6);
            }
        }
    }

    #[test]
    fn balanced_split_covers_every_slot_once() {
        let slots: Vec<Slot> = [5, 1, 1, 9, 2, 2]
            .iter()
            .map(|&len| Slot {
                p: 0,
                g: 0,
                m: 0,
                v: 0,
                len,
            })
            .collect();
        for workers in 1..=8 {
            let parts = balanced(&slots, workers);
            assert!(parts.len() <= workers && !parts.is_empty());
            assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), slots.len());
            assert!(parts.iter().all(|p| !p.is_empty()));
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
