//! Pure text handling for generated output: UTF-8 pieces that arrive split across tokens, stop strings that
//! arrive split across tokens, and Llama 3.1 JSON tool calls in the finished text.

use crate::chat::ToolCall;

/// Turns token bytes into text, holding back an incomplete UTF-8 sequence until its remaining bytes arrive.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Truncated sequence at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Really invalid bytes: replace them as a lossy decoder would, and go on.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of generation, decoded lossily.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// What the stop-string filter lets through for one piece of text.
#[derive(Debug, PartialEq, Eq)]
pub struct StopCheck {
    /// Text safe to send now.
    pub emit: String,
    /// A stop string matched: generation ends and nothing after it is sent.
    pub stopped: bool,
}

/// Finds stop strings in streamed text. Text that might be the start of a stop string is held back until it
/// is clear either way, so a client never sees half of a stop string.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    pub fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        self.held.push_str(text);
        let first_match = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first_match {
            let emit = self.held[..at].to_string();
            self.held.clear();
            return StopCheck { emit, stopped: true };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > keep && self.held.ends_with(&stop[..i]) {
                    keep = i;
                }
            }
        }
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopCheck { emit, stopped: false }
    }

    /// Releases held-back text when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Whether streamed content so far could still turn out to be a tool call; while it could, the server
/// buffers instead of streaming it as text.
pub fn may_be_tool_call(text: &str) -> bool {
    let t = text.trim_start();
    t.is_empty()
        || t.starts_with('{')
        || [PYTHON_TAG, CALL_OPEN]
            .iter()
            .any(|tag| t.starts_with(tag) || tag.starts_with(t))
}

/// Llama 3.1's marker before a call it makes in its own ipython format.
const PYTHON_TAG: &str = "<|python_tag|>";
/// ChatML tool calling (Hermes, Qwen2.5 and our chatml template) wraps each call in these tags.
const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";

/// Parses JSON tool calls: the whole output is one or more `{"name": ..., "parameters": {...}}` objects (also
/// accepting `arguments`), each bare (Llama 3.1, optionally after `<|python_tag|>`) or inside
/// `<tool_call>`…`</tool_call>` (ChatML), with `;` or whitespace between calls. Returns `None` when the text is
/// anything else, so ordinary answers are never mistaken for calls.
pub fn parse_tool_calls(text: &str, known: &[String]) -> Option<Vec<ToolCall>> {
    let t = text.trim();
    let t = t.strip_prefix(PYTHON_TAG).unwrap_or(t).trim();
    if !t.starts_with('{') && !t.starts_with(CALL_OPEN) {
        return None;
    }
    let mut calls = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        let tagged = rest.strip_prefix(CALL_OPEN);
        if let Some(inner) = tagged {
            rest = inner.trim_start();
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        let value = stream.next()?.ok()?;
        let obj = value.as_object()?;
        let name = obj.get("name")?.as_str()?.to_string();
        if !known.is_empty() && !known.contains(&name) {
            return None;
        }
        let arguments = match obj.get("parameters").or_else(|| obj.get("arguments")) {
            // Some fine-tunes emit the arguments JSON-encoded; store the object either way.
            Some(serde_json::Value::String(s)) => serde_json::from_str(s).ok()?,
            Some(v) if v.is_object() => v.clone(),
            None => serde_json::Value::Object(Default::default()),
            Some(_) => return None,
        };
        calls.push(ToolCall { name, arguments });
        rest = rest[stream.byte_offset()..].trim_start();
        if tagged.is_some() {
            rest = rest.strip_prefix(CALL_CLOSE)?;
        }
        rest = rest.trim_start_matches([';', ' ', '\n', '\r', '\t']);
    }
    (!calls.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens() {
        let mut d = Utf8Stream::default();
        let bytes = "é€".as_bytes();
        assert_eq!(d.push(&bytes[..1]), "");
        assert_eq!(d.push(&bytes[1..3]), "é");
        assert_eq!(d.push(&bytes[3..]), "€");
        assert_eq!(d.push(&[0xff, b'a']), "\u{FFFD}a");
        assert_eq!(d.push(&[0xe2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_strings_split_across_pieces() {
        let mut f = StopFilter::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(f.push("hello E").emit, "hello ");
        assert_eq!(
            f.push("Nx"),
            StopCheck {
                emit: "ENx".into(),
                stopped: false
            }
        );
        assert_eq!(
            f.push(" done EN"),
            StopCheck {
                emit: " done ".into(),
                stopped: false
            }
        );
        assert_eq!(
            f.push("D tail"),
            StopCheck {
                emit: "".into(),
                stopped: true
            }
        );
        let mut f = StopFilter::new(vec!["\n\n".into()]);
        assert_eq!(f.push("a\n").emit, "a");
        assert_eq!(f.finish(), "\n");
        let mut none = StopFilter::new(vec![]);
        assert_eq!(none.push("abc").emit, "abc");
    }

    #[test]
    fn llama31_tool_calls() {
        let known = vec!["check_traffic_flow".to_string()];
        let calls = parse_tool_calls(
            r#" {"name": "check_traffic_flow", "parameters": {"src": "10.0.0.1", "port": 443}}"#,
            &known,
        )
        .unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments["port"], 443);
        let calls = parse_tool_calls(
            "<|python_tag|>{\"name\": \"check_traffic_flow\", \"arguments\": \"{\\\"a\\\": 1}\"}; {\"name\": \"check_traffic_flow\", \"parameters\": {}}",
            &known,
        )
        .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments["a"], 1);
        assert_eq!(parse_tool_calls("The answer is {1}", &known), None);
        assert_eq!(parse_tool_calls(r#"{"name": "rm_rf", "parameters": {}}"#, &known), None);
        assert_eq!(
            parse_tool_calls(r#"{"name": "check_traffic_flow", "parameters": {}} trailing"#, &known),
            None
        );
        assert_eq!(parse_tool_calls(r#"{"a": 1}"#, &[]), None);
        let calls = parse_tool_calls(
            "<tool_call>\n{\"name\": \"check_traffic_flow\", \"arguments\": {\"port\": 443}}\n</tool_call>\n<tool_call>{\"name\": \"check_traffic_flow\", \"arguments\": {}}</tool_call>",
            &known,
        )
        .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, serde_json::json!({"port": 443}));
        assert_eq!(
            parse_tool_calls("<tool_call>{\"name\": \"check_traffic_flow\"}", &known),
            None
        );
        assert!(may_be_tool_call("<tool_"));
        assert!(may_be_tool_call("  {\"na"));
        assert!(may_be_tool_call("<|pyth"));
        assert!(!may_be_tool_call("Hello"));
    }
}
