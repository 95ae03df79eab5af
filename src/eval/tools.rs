//! Tool-call accuracy: for eval conversations whose reference answer is a tool call, does the model, prompted
//! with the conversation so far, call the same tool with the same arguments? Pure: the generated text in,
//! the verdict out.

use serde_json::Value;

use crate::chat::{Message, Role, ToolCall};

/// A point in an eval conversation where the reference assistant turn calls tools.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCase {
    /// The conversation up to (not including) the reference turn.
    pub prompt: Vec<Message>,
    /// The tools the conversation offers.
    pub tools: Vec<Value>,
    pub reference: Vec<ToolCall>,
}

/// Every assistant turn with tool calls, in a conversation that offers tools.
pub fn cases(messages: &[Message], tools: &[Value]) -> Vec<ToolCase> {
    if tools.is_empty() {
        return Vec::new();
    }
    messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::Assistant && !m.tool_calls.is_empty())
        .map(|(i, m)| ToolCase {
            prompt: messages[..i].to_vec(),
            tools: tools.to_vec(),
            reference: m.tool_calls.clone(),
        })
        .collect()
}

/// How one generated answer fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// It parsed as calls of tools the conversation offers.
    pub parsed: bool,
    /// And every call matches the reference (name, required arguments with the schema's types, equal values).
    pub correct: bool,
}

fn function(tool: &Value) -> &Value {
    tool.get("function").unwrap_or(tool)
}

/// Judges `generated` (the model's whole answer) against the case.
pub fn judge(generated: &str, case: &ToolCase) -> Verdict {
    let offered: Vec<String> = case
        .tools
        .iter()
        .filter_map(|t| function(t)["name"].as_str().map(String::from))
        .collect();
    let Some(calls) = crate::serve::text::parse_tool_calls(generated, &offered) else {
        return Verdict {
            parsed: false,
            correct: false,
        };
    };
    let correct = calls.len() == case.reference.len()
        && calls.iter().zip(&case.reference).all(|(call, want)| {
            let schema = case
                .tools
                .iter()
                .map(function)
                .find(|f| f["name"] == call.name.as_str())
                .map(|f| &f["parameters"]);
            call.name == want.name
                && schema.is_none_or(|s| satisfies(&call.arguments, s))
                && same(&call.arguments, &want.arguments)
        });
    Verdict { parsed: true, correct }
}

/// Every required argument present, and every argument the schema types has that type.
fn satisfies(arguments: &Value, schema: &Value) -> bool {
    let Some(args) = arguments.as_object() else {
        return false;
    };
    let required_present = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .all(|r| args.contains_key(r));
    let typed = args.iter().all(|(k, v)| {
        let Some(want) = schema["properties"][k]["type"].as_str() else {
            return true;
        };
        match want {
            "string" => v.is_string(),
            "integer" => v.as_f64().is_some_and(|x| x.fract() == 0.0),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => true,
        }
    });
    required_present && typed
}

/// Equal after normalization: numbers by value (443 == 443.0), strings trimmed and without regard to case
/// (`TCP` is `tcp`), objects key by key whatever the order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn case() -> ToolCase {
        let tools = crate::api::dataset::default_tools();
        let messages = vec![
            Message::user("Is 443 open from 10.0.0.5 to 10.1.0.10?"),
            Message::tool_calls(vec![ToolCall {
                name: "check_traffic_flow".into(),
                arguments: json!({"source": "10.0.0.5", "destination": "10.1.0.10", "port": 443, "protocol": "tcp"}),
            }]),
            Message::tool_result("check_traffic_flow", "{\"verdict\": \"allowed\"}"),
            Message::assistant("Allowed."),
        ];
        let mut all = cases(&messages, &tools);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].prompt.len(), 1);
        all.remove(0)
    }

    #[test]
    fn a_call_counts_when_it_parses_names_an_offered_tool_and_matches() {
        let c = case();
        let exact = r#"<tool_call>
{"name": "check_traffic_flow", "arguments": {"protocol": "TCP", "port": 443.0, "destination": "10.1.0.10", "source": " 10.0.0.5"}}
</tool_call>"#;
        assert_eq!(
            judge(exact, &c),
            Verdict {
                parsed: true,
                correct: true
            }
        );
        let llama = r#"{"name": "check_traffic_flow", "parameters": {"source": "10.0.0.5", "destination": "10.1.0.10", "port": 443, "protocol": "tcp"}}"#;
        assert_eq!(
            judge(llama, &c),
            Verdict {
                parsed: true,
                correct: true
            }
        );
        // Wrong value, missing required argument, wrong type, unknown tool, prose.
        for (text, parsed) in [
            (
                r#"{"name": "check_traffic_flow", "arguments": {"source": "10.0.0.5", "destination": "10.1.0.10", "port": 80, "protocol": "tcp"}}"#,
                true,
            ),
            (
                r#"{"name": "check_traffic_flow", "arguments": {"source": "10.0.0.5", "port": 443, "protocol": "tcp"}}"#,
                true,
            ),
            (
                r#"{"name": "check_traffic_flow", "arguments": {"source": "10.0.0.5", "destination": "10.1.0.10", "port": "443", "protocol": "tcp"}}"#,
                true,
            ),
            (r#"{"name": "delete_everything", "arguments": {}}"#, false),
            ("Port 443 is open.", false),
        ] {
            assert_eq!(judge(text, &c), Verdict { parsed, correct: false }, "{text}");
        }
    }
}
