//! The evaluation gate: the figures in, what failed out (one line per figure, naming it). Pure.

use crate::api::evaluation::{EvaluationStatus, Gate};

/// Every way the evaluated model falls short of `gate`; empty when it passes.
pub fn failures(gate: &Gate, e: &EvaluationStatus) -> Vec<String> {
    let mut out = Vec::new();
    if e.adapter.loss.is_some_and(|l| !l.is_finite()) {
        out.push("adapter eval loss is not a number (the run diverged)".into());
    }
    if let (Some(base), Some(adapter)) = (e.base.loss, e.adapter.loss)
        && adapter > base + gate.max_eval_loss_over_base
    {
        out.push(format!(
            "adapter eval loss {adapter:.4} is above the base model's {base:.4} by more than {} (the run diverged)",
            gate.max_eval_loss_over_base
        ));
    }
    for g in &e.gguf {
        let allowed = gate.loss_increase_allowed(g.quantization);
        if let Some(inc) = g.loss_increase
            && inc > allowed
        {
            out.push(format!(
                "{} eval loss is {inc:+.4} over the unquantized adapter (allowed {allowed})",
                g.quantization
            ));
        }
        if g.figures.loss.is_none_or(|l| !l.is_finite()) {
            out.push(format!("{} eval loss could not be measured", g.quantization));
        }
        if gate.require_template_match && !g.template_match {
            out.push(format!(
                "{}: prompts rendered from the GGUF's chat template do not tokenize as in training",
                g.quantization
            ));
        }
        if let (Some(base), Some(acc)) = (e.base.tool_call_accuracy, g.figures.tool_call_accuracy)
            && acc < base - gate.max_tool_call_accuracy_drop
        {
            out.push(format!(
                "{} tool-call accuracy {acc:.2} is below the base model's {base:.2} (allowed drop {})",
                g.quantization, gate.max_tool_call_accuracy_drop
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Quantization;
    use crate::api::evaluation::{GgufEvaluation, ModelFigures};
    use crate::contract::Digest;

    fn healthy() -> EvaluationStatus {
        let figures = |loss: f64, acc: f64| ModelFigures {
            loss: Some(loss),
            perplexity: Some(loss.exp()),
            tool_call_accuracy: Some(acc),
            tool_call_parse_rate: Some(1.0),
        };
        EvaluationStatus {
            base: figures(3.58, 0.0),
            adapter: figures(3.2, 0.0),
            gguf: vec![GgufEvaluation {
                quantization: Quantization::Q4KM,
                digest: Digest::of("q4"),
                figures: figures(3.3, 0.5),
                loss_increase: Some(0.1),
                template_match: true,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_healthy_run_passes_and_each_failure_is_named() {
        let gate = Gate::default();
        assert_eq!(failures(&gate, &healthy()), Vec::<String>::new());

        let mut diverged = healthy();
        diverged.adapter.loss = Some(7.9);
        let f = failures(&gate, &diverged);
        assert!(f.len() == 1 && f[0].contains("the run diverged"), "{f:?}");

        let mut broken = healthy();
        broken.gguf[0].loss_increase = Some(0.9);
        broken.gguf[0].template_match = false;
        broken.gguf[0].figures.tool_call_accuracy = Some(0.0);
        broken.base.tool_call_accuracy = Some(0.5);
        let f = failures(&gate, &broken);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].starts_with("Q4_K_M eval loss is +0.9000 over the unquantized adapter (allowed 0.35)"));
        assert!(f[1].contains("do not tokenize as in training"));
        assert!(f[2].contains("tool-call accuracy 0.00 is below the base model's 0.50"));

        let lenient = Gate {
            require_template_match: false,
            max_tool_call_accuracy_drop: 1.0,
            max_loss_increase: [(Quantization::Q4KM, 1.0)].into(),
            ..Gate::default()
        };
        assert_eq!(failures(&lenient, &broken), Vec::<String>::new());
    }
}
