//! `status.progress` from the trainer's Prometheus text exposition. Pure; the reconciler fetches the text.

use crate::api::training_run::Progress;

/// The value of an unlabelled sample `name` in Prometheus text format.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let mut parts = line.split_whitespace();
        let metric = parts.next()?;
        let metric = metric.split('{').next()?;
        if metric != name {
            return None;
        }
        parts.next()?.parse::<f64>().ok().filter(|v| v.is_finite())
    })
}

/// Progress from the trainer metrics (`fireweave_train_*`); `None` until the trainer reports a step count.
pub fn from_metrics(text: &str) -> Option<Progress> {
    let step = sample(text, "fireweave_train_step")?.max(0.0) as u64;
    let total = sample(text, "fireweave_train_total_steps").unwrap_or(0.0).max(0.0) as u64;
    let percent = (step * 100).checked_div(total).map_or(0, |p| p.min(100));
    Some(Progress {
        step,
        total_steps: total,
        display: format!("{step}/{total} ({percent}%)"),
        epoch: sample(text, "fireweave_train_epoch"),
        loss: sample(text, "fireweave_train_loss"),
        eval_loss: sample(text, "fireweave_train_eval_loss"),
        learning_rate: sample(text, "fireweave_train_learning_rate"),
        tokens_per_second: sample(text, "fireweave_train_tokens_per_second"),
        eta_seconds: sample(text, "fireweave_train_eta_seconds"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_trainer_metrics() {
        let text = "# HELP fireweave_train_step Optimizer steps done\n# TYPE fireweave_train_step gauge\n\
                    fireweave_train_step 150\nfireweave_train_total_steps 750\nfireweave_train_loss 1.25\n\
                    fireweave_train_learning_rate 0.00018\nfireweave_train_tokens_per_second 2100.5\n\
                    fireweave_train_eta_seconds 5400\nfireweave_train_epoch 0.6\nfireweave_train_steps_total 3\n";
        let p = from_metrics(text).expect("step reported");
        assert_eq!((p.step, p.total_steps, p.display.as_str()), (150, 750, "150/750 (20%)"));
        assert_eq!((p.loss, p.eval_loss, p.epoch), (Some(1.25), None, Some(0.6)));
        assert_eq!(p.tokens_per_second, Some(2100.5));
    }

    #[test]
    fn nothing_before_the_first_step_and_garbage_is_ignored() {
        assert_eq!(from_metrics("fireweave_train_loss 2.0\n"), None);
        let p = from_metrics("fireweave_train_step 3\nfireweave_train_loss NaN\n").expect("step");
        assert_eq!((p.loss, p.display.as_str()), (None, "3/0 (0%)"));
    }
}
