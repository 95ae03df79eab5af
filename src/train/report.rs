//! The training report: the loss curve as SVG (train loss per step, eval loss per epoch).

use super::checkpoint::{EvalPoint, LossPoint};

/// A self-contained SVG line chart. Pure: the caller writes it.
pub fn loss_curve_svg(losses: &[LossPoint], evals: &[EvalPoint]) -> String {
    let (w, h, pad) = (640.0, 360.0, 48.0);
    let max_step = losses
        .iter()
        .map(|p| p.step)
        .chain(evals.iter().map(|e| e.step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let values = losses
        .iter()
        .map(|p| p.loss)
        .chain(evals.iter().map(|e| e.loss))
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() {
        (lo.min(hi - 1e-6), hi)
    } else {
        (0.0, 1.0)
    };
    let x = |s: usize| pad + (s as f64 / max_step) * (w - 2.0 * pad);
    let y = |v: f64| h - pad - (v - lo) / (hi - lo).max(1e-9) * (h - 2.0 * pad);
    let line = |pts: Vec<(f64, f64)>| {
        pts.iter()
            .map(|(a, b)| format!("{a:.1},{b:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let train = line(losses.iter().map(|p| (x(p.step), y(p.loss))).collect());
    let eval = line(evals.iter().map(|e| (x(e.step), y(e.loss))).collect());
    let dots: String = evals
        .iter()
        .map(|e| {
            format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#d95f02"/>"##,
                x(e.step),
                y(e.loss)
            )
        })
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{pad}" y="{t}">loss {hi:.3}</text><text x="{pad}" y="{lb}">{lo:.3}</text><text x="{r}" y="{lb}" text-anchor="end">step {ms}</text>
<polyline fill="none" stroke="#1b9e77" stroke-width="1.5" points="{train}"/>
<polyline fill="none" stroke="#d95f02" stroke-dasharray="4 3" points="{eval}"/>{dots}
<text x="{r}" y="{t}" text-anchor="end"><tspan fill="#1b9e77">train</tspan> / <tspan fill="#d95f02">eval</tspan></text>
</svg>
"##,
        b = h - pad,
        r = w - pad,
        t = pad - 8.0,
        lb = h - pad + 16.0,
        ms = max_step as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_point_per_step() {
        let losses: Vec<LossPoint> = (1..=5)
            .map(|s| LossPoint {
                step: s,
                loss: 3.0 - s as f64 * 0.1,
                lr: 1e-4,
            })
            .collect();
        let evals = vec![EvalPoint {
            epoch: 0,
            step: 5,
            loss: 2.6,
        }];
        let svg = loss_curve_svg(&losses, &evals);
        assert!(svg.starts_with("<svg"));
        let train = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(train.split(' ').count(), 5);
        assert_eq!(svg.matches("<circle").count(), 1);
    }
}
