//! The API server's audit log (JSON lines, level Metadata): who asked for what, and what the answer was.

use std::path::Path;

/// One request, as the audit log records it once the response is complete.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: u16,
    pub uri: String,
    /// When the request arrived (RFC 3339, microseconds).
    pub at: String,
}

/// Verbs that change something.
pub const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl AuditEvent {
    pub fn is_write(&self) -> bool {
        WRITES.contains(&self.verb.as_str())
    }

    /// `verb resource[/subresource] ns/name -> code`, for failure messages.
    pub fn describe(&self) -> String {
        let sub = if self.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", self.subresource)
        };
        format!(
            "{} {}{sub} {}/{} -> {} ({})",
            self.verb, self.resource, self.namespace, self.name, self.code, self.uri
        )
    }
}

/// Every completed request in the log.
pub fn events(path: &Path) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .map(|e| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            AuditEvent {
                user: s(&e["user"]["username"]),
                verb: s(&e["verb"]),
                resource: s(&e["objectRef"]["resource"]),
                subresource: s(&e["objectRef"]["subresource"]),
                namespace: s(&e["objectRef"]["namespace"]),
                name: s(&e["objectRef"]["name"]),
                code: e["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                uri: s(&e["requestURI"]),
                at: s(&e["requestReceivedTimestamp"]),
            }
        })
        .collect()
}
