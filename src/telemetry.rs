//! Logging set-up shared by every subcommand.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber: JSON lines for machines (cluster workers, the operator), text for people.
/// `RUST_LOG` overrides the default `info` level.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests call into several entry points) is harmless, so its error is ignored.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
