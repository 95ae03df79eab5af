//! Content rules a conversation must pass before it is scored: roles in a trainable order, nothing empty,
//! answers long enough, no template leftovers, and tool calls that the declared tools would accept.

use super::load::Conversation;
use super::reason::{Reason, Rejection};
use crate::chat::{Message, Role};
use aho_corasick::AhoCorasick;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Rules {
    pub min_answer_chars: usize,
    pub reject_placeholders: bool,
    /// Declared tools (OpenAI function JSON) used when a record declares none.
    pub tools: Vec<Value>,
}

/// Shortest user turn we train on; anything shorter is not a question.
const MIN_QUESTION_CHARS: usize = 8;

pub fn validate(conv: &Conversation, rules: &Rules) -> Result<(), Rejection> {
    check_order(&conv.messages)?;
    for (i, m) in conv.messages.iter().enumerate() {
        let empty = m.content.trim().is_empty();
        // An assistant turn that only calls tools may have no text.
        let tool_call_only = m.role == Role::Assistant && !m.tool_calls.is_empty();
        if empty && !tool_call_only {
            return Err(Rejection::new(
                Reason::EmptyField,
                format!("message {i} ({}) is empty", m.role.as_str()),
            ));
        }
        if m.role == Role::User && m.content.trim().chars().count() < MIN_QUESTION_CHARS {
            return Err(Rejection::new(
                Reason::TooShort,
                format!(
                    "message {i} (user) has {} characters; at least {MIN_QUESTION_CHARS} needed",
                    m.content.trim().chars().count()
                ),
            ));
        }
    }
    if let Some((i, answer)) = conv
        .messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.role == Role::Assistant && !m.content.trim().is_empty())
    {
        let n = answer.content.trim().chars().count();
        if n < rules.min_answer_chars {
            return Err(Rejection::new(
                Reason::TooShort,
                format!(
                    "message {i} (assistant) has {n} characters; filters.minAnswerChars is {}",
                    rules.min_answer_chars
                ),
            ));
        }
    }
    if rules.reject_placeholders {
        for (i, m) in conv.messages.iter().enumerate().filter(|(_, m)| m.role != Role::System) {
            if let Some(found) = find_placeholder(&m.content) {
                return Err(Rejection::new(
                    Reason::Placeholder,
                    format!("message {i} ({}) contains placeholder text {found:?}", m.role.as_str()),
                ));
            }
        }
    }
    let tools = if conv.tools.is_empty() {
        &rules.tools
    } else {
        &conv.tools
    };
    check_tool_calls(&conv.messages, tools)
}

/// system? then user, assistant alternating; an assistant turn with tool calls is followed by its tool results
/// and then an assistant turn; the conversation ends with the assistant (text or a tool call to learn).
fn check_order(messages: &[Message]) -> Result<(), Rejection> {
    let turns: Vec<(usize, &Message)> = messages
        .iter()
        .enumerate()
        .skip_while(|(_, m)| m.role == Role::System)
        .collect();
    if turns.len() + 1 < messages.len() {
        return Err(Rejection::new(
            Reason::WrongOrder,
            "more than one leading system message",
        ));
    }
    let Some((_, first)) = turns.first() else {
        return Err(Rejection::new(
            Reason::MissingField,
            "the conversation has no user or assistant messages",
        ));
    };
    if first.role != Role::User {
        return Err(Rejection::new(
            Reason::WrongOrder,
            format!("the first turn is {}, not user", first.role.as_str()),
        ));
    }
    for w in turns.windows(2) {
        let ((_, prev), (i, m)) = (w[0], w[1]);
        let ok = match m.role {
            Role::System => false,
            Role::User => prev.role == Role::Assistant && prev.tool_calls.is_empty(),
            Role::Assistant => prev.role == Role::User || prev.role == Role::Tool,
            Role::Tool => (prev.role == Role::Assistant && !prev.tool_calls.is_empty()) || prev.role == Role::Tool,
        };
        if !ok {
            let what = if prev.role == Role::Assistant && !prev.tool_calls.is_empty() {
                "assistant tool call".to_string()
            } else {
                prev.role.as_str().to_string()
            };
            return Err(Rejection::new(
                Reason::WrongOrder,
                format!("message {i} ({}) follows {what}", m.role.as_str()),
            ));
        }
    }
    match turns.last() {
        Some((_, m)) if m.role == Role::Assistant => Ok(()),
        Some((i, m)) => Err(Rejection::new(
            Reason::WrongOrder,
            format!("the last message ({i}) is {}, not assistant", m.role.as_str()),
        )),
        None => Ok(()),
    }
}

/// Leftovers of templates and refusals that teach the model to emit them. Code blocks are skipped, where
/// `{name}` and TODO are legitimate.
pub fn find_placeholder(text: &str) -> Option<String> {
    const PHRASES: [&str; 9] = [
        "[insert",
        "<insert",
        "lorem ipsum",
        "as an ai language model",
        "as a large language model",
        "[placeholder",
        "<placeholder",
        "{placeholder}",
        "[your answer",
    ];
    // One scan for all phrases, case-insensitively, instead of a lowercased copy searched nine times. ASCII case
    // folding is enough: no character outside ASCII lowercases to a letter these phrases contain. The phrase
    // reported is the first in the list that occurs, wherever it occurs.
    static MATCHER: std::sync::OnceLock<AhoCorasick> = std::sync::OnceLock::new();
    let matcher = MATCHER.get_or_init(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            // Nine short phrases make a small DFA: one table lookup per byte, the fastest scan.
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(PHRASES)
            .expect("the placeholder phrases are a valid automaton")
    });
    let prose = strip_code(text);
    let prose: &str = &prose;
    // `is_match` takes the automaton's fast path; the overlapping scan (to report the first phrase of the
    // list) runs only on the rare record that has one.
    if matcher.is_match(prose)
        && let Some(p) = matcher
            .find_overlapping_iter(prose)
            .map(|m| m.pattern().as_usize())
            .min()
    {
        return Some(PHRASES[p].to_string());
    }
    // Whole words (maximal runs of ASCII letters and digits) equal to a marker. Every marker starts with T, F or
    // X, so the scan jumps between those letters rather than splitting all the text into words.
    let b = prose.as_bytes();
    let mut i = 0;
    while let Some(p) = memchr::memchr3(b'T', b'F', b'X', &b[i..]) {
        let start = i + p;
        i = start + 1;
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
        if let w @ (b"TODO" | b"TBD" | b"FIXME" | b"XXX") = &b[start..end] {
            return Some(String::from_utf8_lossy(w).into_owned());
        }
        i = end.max(i);
    }
    unfilled_variable(prose)
}

/// `{variable}` (one identifier in single braces) outside code: a format string nobody filled in.
/// `${VAR}`, `{{ jinja }}` and JSON objects don't match.
fn unfilled_variable(prose: &str) -> Option<String> {
    let b = prose.as_bytes();
    let mut i = 0;
    while let Some(p) = prose[i..].find('{') {
        let s = i + p;
        i = s + 1;
        if s > 0 && matches!(b[s - 1], b'$' | b'{') {
            continue;
        }
        let Some(len) = prose[s + 1..].find('}') else { break };
        let inner = &prose[s + 1..s + 1 + len];
        let ident = !inner.is_empty()
            && inner.len() <= 40
            && inner.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
            && inner
                .bytes()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && b.get(s + 2 + len) != Some(&b'}');
        if ident {
            return Some(format!("{{{inner}}}"));
        }
    }
    None
}

/// The text outside fenced (```) blocks and inline `code` spans, pieces joined by a space. Text without a
/// backtick is returned as it is: most answers have none, and the placeholder scans do not care about a trailing space.
pub fn strip_code(text: &str) -> std::borrow::Cow<'_, str> {
    if memchr::memchr(b'`', text.as_bytes()).is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for (n, part) in text.split("```").enumerate() {
        if n % 2 == 0 {
            for (m, piece) in part.split('`').enumerate() {
                if m % 2 == 0 {
                    out.push_str(piece);
                    out.push(' ');
                }
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

fn check_tool_calls(messages: &[Message], tools: &[Value]) -> Result<(), Rejection> {
    for (i, m) in messages.iter().enumerate() {
        for call in &m.tool_calls {
            let Some(tool) = tools.iter().find(|t| tool_name(t) == Some(call.name.as_str())) else {
                let declared: Vec<&str> = tools.iter().filter_map(tool_name).collect();
                return Err(Rejection::new(
                    Reason::UnknownTool,
                    format!(
                        "message {i} calls {:?}, which is not a declared tool ({})",
                        call.name,
                        declared.join(", ")
                    ),
                ));
            };
            let schema = tool.pointer("/function/parameters").unwrap_or(&Value::Null);
            if let Err(e) = check_schema(&call.arguments, schema, "") {
                return Err(Rejection::new(
                    Reason::InvalidToolArguments,
                    format!("message {i} calls {}: arguments{e}", call.name),
                ));
            }
        }
    }
    Ok(())
}

fn tool_name(t: &Value) -> Option<&str> {
    t.pointer("/function/name").and_then(Value::as_str)
}

/// The JSON Schema keywords tool definitions use: type, properties, required, additionalProperties, enum,
/// const, minimum/maximum, minLength/maxLength, items, minItems/maxItems. Unknown keywords are not enforced.
/// Tool arguments must be an object even when the schema omits `type`.
pub fn check_schema(v: &Value, schema: &Value, path: &str) -> Result<(), String> {
    if path.is_empty() && !v.is_object() {
        return Err(format!(" must be a JSON object, got {}", short(v)));
    }
    let Value::Object(s) = schema else { return Ok(()) };
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| type_matches(v, t)) {
            return Err(format!("{path}: expected {}, got {}", types.join(" or "), short(v)));
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!("{path}: {} is not one of {}", short(v), list.join(", ")));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{path}: must be {c}"));
    }
    if let Some(x) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            return Err(format!("{path}: {x} is below the minimum {min}"));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            return Err(format!("{path}: {x} is above the maximum {max}"));
        }
    }
    if let Value::String(text) = v {
        let n = text.chars().count() as u64;
        if s.get("minLength").and_then(Value::as_u64).is_some_and(|m| n < m) {
            return Err(format!("{path}: string shorter than minLength"));
        }
        if s.get("maxLength").and_then(Value::as_u64).is_some_and(|m| n > m) {
            return Err(format!("{path}: string longer than maxLength"));
        }
    }
    if let Value::Array(items) = v {
        let n = items.len() as u64;
        if s.get("minItems").and_then(Value::as_u64).is_some_and(|m| n < m)
            || s.get("maxItems").and_then(Value::as_u64).is_some_and(|m| n > m)
        {
            return Err(format!("{path}: wrong number of items ({n})"));
        }
        if let Some(item_schema) = s.get("items") {
            for (k, item) in items.iter().enumerate() {
                check_schema(item, item_schema, &format!("{path}[{k}]"))?;
            }
        }
    }
    if let Value::Object(obj) = v {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = s.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    return Err(format!("{path}.{r}: required field is missing"));
                }
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => check_schema(val, sub, &format!("{path}.{k}"))?,
                None => {
                    if s.get("additionalProperties") == Some(&Value::Bool(false)) {
                        return Err(format!("{path}.{k}: not a parameter of this tool"));
                    }
                }
            }
        }
    }
    Ok(())
}

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if s.len() > 40 {
        format!("{kind} {}…", &s[..s.char_indices().nth(40).map_or(s.len(), |(i, _)| i)])
    } else {
        format!("{kind} {s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dataset::default_tools;
    use crate::chat::ToolCall;
    use serde_json::json;

    const ANSWER: &str =
        "Use traffic flow analysis: enter the source, destination and port, then read the verdict per hop.";

    fn rules() -> Rules {
        Rules {
            min_answer_chars: 40,
            reject_placeholders: true,
            tools: default_tools(),
        }
    }

    fn conv(messages: Vec<Message>) -> Conversation {
        Conversation {
            id: None,
            topic: None,
            messages,
            tools: Vec::new(),
        }
    }

    fn reason(messages: Vec<Message>) -> Option<Reason> {
        validate(&conv(messages), &rules()).err().map(|r| r.reason)
    }

    fn call(name: &str, args: serde_json::Value) -> Message {
        Message::tool_calls(vec![ToolCall {
            name: name.into(),
            arguments: args,
        }])
    }

    #[test]
    fn a_good_conversation_passes() {
        assert_eq!(
            reason(vec![
                Message::system("s"),
                Message::user("How do I check a flow?"),
                Message::assistant(ANSWER)
            ]),
            None
        );
    }

    #[test]
    fn wrong_order_is_rejected() {
        assert_eq!(
            reason(vec![
                Message::assistant(ANSWER),
                Message::user("How do I check a flow?")
            ]),
            Some(Reason::WrongOrder)
        );
        assert_eq!(
            reason(vec![
                Message::user("How do I check a flow?"),
                Message::user("And NAT as well?"),
                Message::assistant(ANSWER)
            ]),
            Some(Reason::WrongOrder)
        );
        // Ends with the user: nothing to learn.
        assert_eq!(
            reason(vec![
                Message::user("How do I check a flow?"),
                Message::assistant(ANSWER),
                Message::user("Thanks a lot!")
            ]),
            Some(Reason::WrongOrder)
        );
        // A tool result without a call before it.
        assert_eq!(
            reason(vec![
                Message::user("How do I check a flow?"),
                Message::tool_result("x", "{}"),
                Message::assistant(ANSWER)
            ]),
            Some(Reason::WrongOrder)
        );
        assert_eq!(
            reason(vec![Message::system("only a system prompt")]),
            Some(Reason::MissingField)
        );
    }

    #[test]
    fn empty_and_short_fields_are_rejected() {
        assert_eq!(
            reason(vec![Message::user("How do I check a flow?"), Message::assistant("  ")]),
            Some(Reason::EmptyField)
        );
        assert_eq!(
            reason(vec![Message::user(""), Message::assistant(ANSWER)]),
            Some(Reason::EmptyField)
        );
        assert_eq!(
            reason(vec![
                Message::user("How do I check a flow?"),
                Message::assistant("Yes.")
            ]),
            Some(Reason::TooShort)
        );
        assert_eq!(
            reason(vec![Message::user("DNS?"), Message::assistant(ANSWER)]),
            Some(Reason::TooShort)
        );
    }

    #[test]
    fn placeholders_are_found_outside_code_only() {
        for text in [
            "[Insert the steps here] and then verify the change in the firewall log.",
            "Deploy the rule. TODO: explain the rollback procedure for failed deployments.",
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
            "As an AI language model, I cannot log in to your firewall, but here is the idea.",
            "Send the request to the server at {hostname} and wait for the job to finish.",
        ] {
            assert_eq!(
                reason(vec![Message::user("How do I check a flow?"), Message::assistant(text)]),
                Some(Reason::Placeholder),
                "{text}"
            );
        }
        for text in [
            "Call `GET /api/v1/jobs/{id}` and poll until the state is succeeded or failed.",
            "```python\nprint(f\"{host}\")  # TODO later\n```\nThe f-string above prints the host name.",
            "Use ${TOKEN} from the environment and {{ jinja }} templates stay untouched here.",
            "The body is {\"source\": \"10.0.0.1\"} as JSON and the answer is a JSON object.",
        ] {
            assert_eq!(find_placeholder(text), None, "{text}");
        }
        let mut lenient = rules();
        lenient.reject_placeholders = false;
        let c = conv(vec![
            Message::user("How do I check a flow?"),
            Message::assistant("TODO: write the answer for this question later on."),
        ]);
        assert!(validate(&c, &lenient).is_ok());
    }

    #[test]
    fn tool_calls_must_name_a_declared_tool() {
        let r = reason(vec![
            Message::user("Delete rule web-in please"),
            call("delete_firewall_rule", json!({"rule": "web-in"})),
        ]);
        assert_eq!(r, Some(Reason::UnknownTool));
        // A record's own tools replace the defaults.
        let mut c = conv(vec![
            Message::user("Delete rule web-in please"),
            call("delete_firewall_rule", json!({"rule": "web-in"})),
        ]);
        c.tools = vec![
            json!({"type": "function", "function": {"name": "delete_firewall_rule", "parameters": {"type": "object"}}}),
        ];
        assert!(validate(&c, &rules()).is_ok());
    }

    #[test]
    fn tool_arguments_must_match_the_schema() {
        let ok = json!({"source": "10.1.1.1", "destination": "10.2.2.2", "port": 443});
        assert_eq!(
            reason(vec![
                Message::user("Check 10.1.1.1 to 10.2.2.2"),
                call("check_traffic_flow", ok)
            ]),
            None
        );
        for bad in [
            json!({"source": "10.1.1.1", "destination": "10.2.2.2", "port": "https"}),
            json!({"source": "10.1.1.1", "port": 443}),
            json!({"source": "10.1.1.1", "destination": "10.2.2.2", "port": 70000}),
            json!({"source": "10.1.1.1", "destination": "10.2.2.2", "port": 443, "vlan": 7}),
            json!({"source": "10.1.1.1", "destination": "10.2.2.2", "port": 443, "protocol": "sctp"}),
            json!("source=10.1.1.1"),
        ] {
            let r = validate(
                &conv(vec![
                    Message::user("Check 10.1.1.1 to 10.2.2.2"),
                    call("check_traffic_flow", bad.clone()),
                ]),
                &rules(),
            );
            let err = r.expect_err("bad arguments must be rejected");
            assert_eq!(err.reason, Reason::InvalidToolArguments, "{bad}: {}", err.detail);
        }
        let r = validate(
            &conv(vec![
                Message::user("Scan pa-dc1-edge for ISO"),
                call(
                    "run_compliance_scan",
                    json!({"framework": "ISO27001", "firewall": "pa-dc1-edge"}),
                ),
            ]),
            &rules(),
        );
        let detail = r.expect_err("enum").detail;
        assert!(detail.contains(".framework") && detail.contains("ISO27001"), "{detail}");
    }
}
