//! Logging and progress display shared by every subcommand.
//!
//! Workers draw their own progress bars; when the local pipeline runs several of them in one process it
//! installs one [`MultiProgress`] here, so every bar lands in a single live view and log lines are printed
//! above the bars instead of tearing through them.

use std::io::Write;
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, fmt};

static VIEW: OnceLock<MultiProgress> = OnceLock::new();

/// Installs the global subscriber: JSON lines for machines (cluster workers, the operator), text for people.
/// `RUST_LOG` overrides the default `info` level.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(Stderr);
    // A second init (tests call into several entry points) is harmless, so its error is ignored.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Makes every later [`bar`] part of one live view; returns it. Idempotent.
pub fn install_view() -> &'static MultiProgress {
    VIEW.get_or_init(MultiProgress::new)
}

/// A progress bar (`len` > 0) or spinner (`len` == 0) labelled `prefix`, in the shared view when one is
/// installed. indicatif draws nothing when stderr is not a terminal, so cluster logs stay clean.
pub fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = if len == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(len)
    };
    let template = if len == 0 {
        "{spinner} {prefix:>12} {elapsed:>5} {wide_msg}"
    } else {
        "{spinner} {prefix:>12} [{bar:30}] {pos}/{len} {elapsed:>5}<{eta:<5} {wide_msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    let bar = match VIEW.get() {
        Some(view) => view.add(bar),
        None => bar,
    };
    if len == 0 {
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    bar
}

/// stderr, but written between redraws of the live view when there is one.
#[derive(Clone, Copy)]
struct Stderr;

struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = std::mem::take(&mut self.0);
        let write = || {
            let _ = std::io::stderr().write_all(&text);
        };
        match VIEW.get() {
            Some(view) => view.suspend(write),
            None => write(),
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::new())
    }
}
