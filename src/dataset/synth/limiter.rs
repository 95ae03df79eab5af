//! Tokens-per-minute budget as a sliding window: the tokens of the requests started in any window never add
//! up to more than the budget (a token bucket would allow twice the budget across a window boundary).
//! A request is charged its estimate up front and corrected to the provider's reported usage afterwards.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TokenBudget {
    per_window: u64,
    window: Duration,
    spent: Mutex<VecDeque<Charge>>,
}

struct Charge {
    id: u64,
    at: Instant,
    tokens: u64,
}

/// A reservation; `settle` replaces the estimate with what the request really used.
pub struct Ticket {
    id: u64,
}

impl TokenBudget {
    pub fn new(per_window: u64, window: Duration) -> Self {
        TokenBudget {
            per_window,
            window,
            spent: Mutex::new(VecDeque::new()),
        }
    }

    /// How long to wait before `tokens` fit, or `None` (and the charge is made) when they fit now.
    /// A request larger than the whole budget runs alone in an otherwise empty window.
    pub fn try_reserve(&self, tokens: u64, now: Instant, id: u64) -> Result<Ticket, Duration> {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        while spent.front().is_some_and(|c| now.duration_since(c.at) >= self.window) {
            spent.pop_front();
        }
        let used: u64 = spent.iter().map(|c| c.tokens).sum();
        if spent.is_empty() || used + tokens <= self.per_window {
            spent.push_back(Charge { id, at: now, tokens });
            return Ok(Ticket { id });
        }
        // Wait until enough of the oldest charges leave the window.
        let mut freed = 0;
        for c in spent.iter() {
            freed += c.tokens;
            if used - freed + tokens <= self.per_window {
                return Err(self.window.saturating_sub(now.duration_since(c.at)) + Duration::from_millis(1));
            }
        }
        let last = spent.back().map_or(now, |c| c.at);
        Err(self.window.saturating_sub(now.duration_since(last)) + Duration::from_millis(1))
    }

    pub async fn reserve(&self, tokens: u64, id: u64) -> Ticket {
        loop {
            match self.try_reserve(tokens, Instant::now(), id) {
                Ok(t) => return t,
                Err(wait) => {
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        tokens,
                        "waiting for the tokens-per-minute budget"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub fn settle(&self, ticket: Ticket, actual: u64) {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = spent.iter_mut().find(|c| c.id == ticket.id) {
            c.tokens = actual;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_holds_the_budget_and_frees_as_charges_expire() {
        let b = TokenBudget::new(1000, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(b.try_reserve(600, t0, 1).is_ok());
        assert!(b.try_reserve(400, t0 + Duration::from_secs(1), 2).is_ok());
        let wait = b
            .try_reserve(100, t0 + Duration::from_secs(2), 3)
            .err()
            .expect("over budget must wait");
        // The first charge (600) leaves the window at t0+60s.
        assert!(
            wait > Duration::from_secs(57) && wait <= Duration::from_secs(59),
            "{wait:?}"
        );
        assert!(b.try_reserve(100, t0 + Duration::from_secs(61), 3).is_ok());
    }

    #[test]
    fn settling_to_real_usage_frees_room() {
        let b = TokenBudget::new(1000, Duration::from_secs(60));
        let t0 = Instant::now();
        let Ok(ticket) = b.try_reserve(900, t0, 1) else {
            panic!("900 of 1000 tokens fit")
        };
        assert!(b.try_reserve(500, t0, 2).is_err());
        b.settle(ticket, 200);
        assert!(b.try_reserve(500, t0, 2).is_ok());
    }

    #[test]
    fn an_oversized_request_runs_alone() {
        let b = TokenBudget::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(b.try_reserve(5000, t0, 1).is_ok());
        assert!(b.try_reserve(1, t0 + Duration::from_secs(30), 2).is_err());
    }
}
