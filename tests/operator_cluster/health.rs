//! Must-show 6's instrument: the chart's Argo CD health check (charts/fireweave-ai/argocd/health.lua) run by Lua
//! 5.1, the language version of Argo CD's gopher-lua, on objects as the real API server returns them.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::cluster::release::repo;

/// A Lua table constructor for JSON data (null becomes nil, as Argo CD converts it).
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // JSON string escapes are valid Lua escapes for this text.
        Value::String(s) => serde_json::to_string(s).expect("string"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", serde_json::to_string(k).expect("key"), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `(status, message)` that Argo CD would show for `obj`.
pub fn argo_health(obj: &Value) -> (String, String) {
    let script = std::fs::read_to_string(repo().join("charts/fireweave-ai/argocd/health.lua")).expect("health.lua");
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\n\", hs.message)\n",
        lua(obj)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 (Debian package lua5.1) runs the Argo CD health check");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("write program");
    let out = child.wait_with_output().expect("lua5.1");
    assert!(
        out.status.success(),
        "health.lua: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

/// Asserts Argo CD's verdict on `obj`.
pub fn assert_health(obj: &Value, want: &str) {
    let (status, message) = argo_health(obj);
    assert_eq!(
        status, want,
        "Argo CD health of {} {} is {status} ({message}); status: {}",
        obj["kind"], obj["metadata"]["name"], obj["status"]
    );
}
