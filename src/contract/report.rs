//! How a worker step ends: its result, or the reason it failed, in the termination message Kubernetes copies
//! into the Pod status (and the operator into the CR status), and an exit code. One writer for every step.
//!
//! A step's body runs inside [`run_step`], which also catches a panic anywhere below it (a libtorch error
//! surfacing as a panic, an overflow caught by a debug build, a bug) so that the Pod still says why it died.

use std::fmt::Display;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// The kubelet's default `terminationMessagePath`.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The kubelet keeps at most 4096 bytes of a termination message.
pub const MESSAGE_LIMIT: usize = 4096;

/// A step's result, as its termination message carries it.
pub trait StepResult: Serialize {
    /// The same result with the parts that can grow without bound (per-topic lists, say) left out, for when
    /// the whole one does not fit the kubelet's limit. The operator treats the missing parts as unknown.
    fn shortened(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// Why a step failed, in words (the error's own text, or the panic's message and place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} failed: {reason}")]
pub struct StepFailed {
    pub step: &'static str,
    pub reason: String,
}

/// The termination message of a succeeded step: the result as one JSON line, shortened to fit if need be.
pub fn success_message<R: StepResult>(result: &R) -> String {
    let line = serde_json::to_string(result).unwrap_or_default();
    if line.len() <= MESSAGE_LIMIT {
        return line;
    }
    result
        .shortened()
        .and_then(|s| serde_json::to_string(&s).ok())
        .filter(|s| s.len() <= MESSAGE_LIMIT)
        .unwrap_or(line)
}

/// The termination message of a failed step. The operator shows its last line; the error chain reads best
/// as one line, so it is kept on one, cut at the kubelet's limit on a character boundary.
pub fn failure_message(failed: &StepFailed) -> String {
    let text = failed.to_string().replace('\n', " ");
    if text.len() <= MESSAGE_LIMIT {
        return text;
    }
    let mut end = MESSAGE_LIMIT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Writes the termination message when Kubernetes provides the file (an empty path or a missing file: a run
/// outside a Pod, which reports through its return value instead).
pub fn write_termination_message(path: &Path, message: &str) {
    if path.as_os_str().is_empty() || !path.exists() {
        return;
    }
    if let Err(e) = std::fs::write(path, message) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the termination message");
    }
}

/// Fault injection for the tests that prove a failing step reports why: `FIREWEAVE_INJECT_FAULT=train`
/// (comma-separated step names) makes that step fail the way a real fault would, at a point where it has
/// done real work. Never set in a Pod the operator builds.
pub fn fault_injected(step: &str) -> bool {
    std::env::var("FIREWEAVE_INJECT_FAULT").is_ok_and(|v| v.split(',').any(|s| s.trim() == step))
}

thread_local! {
    /// The last panic's place and message, as the hook saw it (the payload alone has no location). Kept per
    /// thread: tests — and a worker's own threads — can panic at the same time, and a step must report its own
    /// panic, not whichever came last.
    static LAST_PANIC: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

/// The last panic on any thread, with its bare message: a panic on a pool thread (rayon) reaches the step's
/// thread as a re-raised payload, which the hook does not see again, so its place is found here by message.
static LAST_PANIC_ANY_THREAD: Mutex<Option<(String, String)>> = Mutex::new(None);

fn install_panic_recorder() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = payload_text(info.payload());
            let text = match info.location() {
                Some(l) => format!("panicked at {}:{}: {message}", l.file(), l.line()),
                None => format!("panicked: {message}"),
            };
            LAST_PANIC.with(|last| *last.borrow_mut() = Some((message.clone(), text.clone())));
            if let Ok(mut last) = LAST_PANIC_ANY_THREAD.lock() {
                *last = Some((message, text));
            }
            previous(info);
        }));
    });
}

/// The recorded place of the panic whose payload reached the step's thread; a record is used only when its
/// message is the payload's (a panic caught and handled earlier leaves a record that is not this one).
fn recorded_panic(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload_text(payload);
    let take_if_same = |last: &mut Option<(String, String)>| {
        let same = last.as_ref().is_some_and(|(m, _)| *m == message);
        if same { last.take().map(|(_, text)| text) } else { None }
    };
    LAST_PANIC
        .with(|last| take_if_same(&mut last.borrow_mut()))
        .or_else(|| {
            LAST_PANIC_ANY_THREAD
                .lock()
                .ok()
                .and_then(|mut last| take_if_same(&mut last))
        })
        .unwrap_or_else(|| format!("panicked: {message}"))
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs one worker step at its boundary: on success the result goes to the termination message and, as the
/// last line, to stdout (a Pod whose message file is unreadable still has it in its log); on failure — an
/// error or a panic — the reason goes to the termination message and is returned for a non-zero exit.
pub fn run_step<R, E, F>(step: &'static str, termination_log: &Path, body: F) -> Result<R, StepFailed>
where
    R: StepResult,
    E: Display,
    F: FnOnce() -> Result<R, E>,
{
    install_panic_recorder();
    let outcome = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(StepFailed {
            step,
            reason: e.to_string(),
        }),
        Err(payload) => Err(StepFailed {
            step,
            reason: recorded_panic(payload.as_ref()),
        }),
    };
    match &outcome {
        Ok(result) => {
            let message = success_message(result);
            write_termination_message(termination_log, &message);
            // In a Pod (a termination log named) the result is also the log's last line; a caller in-process
            // (`fireweave-ai run`, which passes no path) has the value itself.
            if !termination_log.as_os_str().is_empty() {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", serde_json::to_string(result).unwrap_or_default());
            }
        }
        Err(failed) => {
            tracing::error!(step, reason = %failed.reason, "step failed");
            write_termination_message(termination_log, &failure_message(failed));
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Debug)]
    struct Big {
        files: Vec<String>,
        topics: Vec<String>,
    }

    impl StepResult for Big {
        fn shortened(&self) -> Option<Self> {
            Some(Big {
                files: self.files.clone(),
                topics: Vec::new(),
            })
        }
    }

    fn log_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        std::fs::write(&path, "").unwrap();
        (dir, path)
    }

    #[test]
    fn success_is_the_result_shortened_to_fit() {
        let (_d, log) = log_file();
        let big = Big {
            files: vec!["a.gguf".into()],
            topics: vec!["x".repeat(100); 100],
        };
        run_step("dataset", &log, || Ok::<_, String>(big)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.len() <= MESSAGE_LIMIT, "{}", text.len());
        assert_eq!(text, r#"{"files":["a.gguf"],"topics":[]}"#);
    }

    #[test]
    fn an_error_is_the_reason_on_one_line() {
        let (_d, log) = log_file();
        let failed = run_step::<Big, _, _>("train", &log, || Err("tensor error:\nshape mismatch")).unwrap_err();
        assert_eq!(failed.to_string(), "train failed: tensor error:\nshape mismatch");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "train failed: tensor error: shape mismatch"
        );
    }

    #[test]
    fn a_panic_is_caught_with_its_place() {
        let (_d, log) = log_file();
        let failed = run_step::<Big, String, _>("quantize", &log, || {
            let v: Vec<u32> = Vec::new();
            Ok(Big {
                files: vec![v[3].to_string()],
                topics: Vec::new(),
            })
        })
        .unwrap_err();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.starts_with("quantize failed: panicked at src/contract/report.rs:"),
            "{text}"
        );
        assert!(text.contains("index out of bounds"), "{text}");
        assert_eq!(failed.step, "quantize");
    }

    #[test]
    fn a_pool_thread_panic_keeps_its_place_and_another_thread_panic_is_not_taken_for_it() {
        let (_d, log) = log_file();
        install_panic_recorder();
        let pool_panic = || std::thread::spawn(|| panic!("shard 7 has no rows")).join().unwrap_err();
        // Re-raised on the step's thread, as rayon does: the hook saw it on the pool thread only.
        let failed = run_step::<Big, String, _>("dataset", &log, || panic::resume_unwind(pool_panic())).unwrap_err();
        assert!(
            failed.reason.starts_with("panicked at src/contract/report.rs:")
                && failed.reason.ends_with("shard 7 has no rows"),
            "{}",
            failed.reason
        );
        // A different panic lands between the pool thread's and the re-raise: the step still reports its own.
        let failed = run_step::<Big, String, _>("dataset", &log, || {
            let payload = pool_panic();
            let _ = std::thread::spawn(|| panic!("someone else's bug")).join();
            panic::resume_unwind(payload)
        })
        .unwrap_err();
        assert_eq!(failed.reason, "panicked: shard 7 has no rows");
    }

    #[test]
    fn long_reasons_are_cut_at_the_limit() {
        let failed = StepFailed {
            step: "train",
            reason: "é".repeat(3000),
        };
        let m = failure_message(&failed);
        assert!(m.len() <= MESSAGE_LIMIT && m.ends_with("..."));
    }
}
