//! Tool definitions and call arguments in the form Ollama passes them to a template, so that every renderer
//! of ours prints exactly the bytes Ollama prints.
//!
//! Ollama reads a request's tools into its own `api.Tool` struct and its call arguments into a Go map, and a
//! template prints them as Go's JSON of those: keys in the struct's field order (and maps sorted), schema
//! keywords the struct has no field for dropped (`minimum`, `additionalProperties`, `default`, ...), empty
//! optional fields left out, `required`/`properties` written as `null` when absent, numbers through float64.
//! A tools template printing these values with `tojson(separators=(',', ':'))` then writes what Ollama's
//! `{{ . }}` writes — except that Go escapes `<`, `>` and `&` in strings, which the evaluation's template
//! check reports when a conversation has them. (Facts from Ollama's api/types.go, v0.12.6.)

use serde_json::{Map, Value};

/// A tool definition as Ollama's `api.Tool` holds it.
pub fn ollama_tool(tool: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), string_or_empty(&tool["type"]));
    put_any(&mut out, "items", &tool["items"]);
    let f = &tool["function"];
    let mut function = Map::new();
    function.insert("name".into(), string_or_empty(&f["name"]));
    if let Some(d) = f["description"].as_str().filter(|d| !d.is_empty()) {
        function.insert("description".into(), d.into());
    }
    let p = &f["parameters"];
    let mut parameters = Map::new();
    parameters.insert("type".into(), string_or_empty(&p["type"]));
    put_any(&mut parameters, "$defs", &p["$defs"]);
    put_any(&mut parameters, "items", &p["items"]);
    let required = match p["required"].as_array() {
        Some(r) => Value::Array(r.iter().filter(|v| v.is_string()).cloned().collect()),
        None => Value::Null,
    };
    parameters.insert("required".into(), required);
    let properties = match p["properties"].as_object() {
        Some(props) => {
            let mut sorted: Vec<(&String, &Value)> = props.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), property(v))).collect())
        }
        None => Value::Null,
    };
    parameters.insert("properties".into(), properties);
    function.insert("parameters".into(), Value::Object(parameters));
    out.insert("function".into(), Value::Object(function));
    Value::Object(out)
}

/// One property as `api.ToolProperty` holds it.
fn property(p: &Value) -> Value {
    let mut out = Map::new();
    if let Some(any_of) = p["anyOf"].as_array().filter(|a| !a.is_empty()) {
        out.insert("anyOf".into(), Value::Array(any_of.iter().map(property).collect()));
    }
    match &p["type"] {
        Value::String(s) => {
            out.insert("type".into(), s.clone().into());
        }
        // A list of one type is written as that type; more stay a list.
        Value::Array(types) if types.len() == 1 => {
            out.insert("type".into(), types[0].clone());
        }
        Value::Array(types) if !types.is_empty() => {
            out.insert("type".into(), Value::Array(types.clone()));
        }
        _ => {}
    }
    put_any(&mut out, "items", &p["items"]);
    if let Some(d) = p["description"].as_str().filter(|d| !d.is_empty()) {
        out.insert("description".into(), d.into());
    }
    if let Some(e) = p["enum"].as_array().filter(|e| !e.is_empty()) {
        out.insert("enum".into(), go_any(&Value::Array(e.clone())));
    }
    Value::Object(out)
}

/// Call arguments as Go's map of them: keys sorted at every level, numbers through float64.
pub fn ollama_arguments(arguments: &Value) -> Value {
    go_any(arguments)
}

/// A JSON value after a round trip through Go's `any`: objects sorted by key, numbers as float64 (an
/// integral value prints without a fraction, as Go writes it).
pub fn go_any(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut sorted: Vec<(&String, &Value)> = map.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), go_any(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(go_any).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() && f == f.trunc() && f.abs() < 1e21 => {
                if f.abs() < 9.007_199_254_740_992e15 {
                    Value::from(f as i64)
                } else {
                    // Beyond 2^53 Go prints the float's shortest decimal digits; keep them as an integer.
                    Value::Number(serde_json::Number::from_f64(f).unwrap_or_else(|| n.clone()))
                }
            }
            Some(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            None => Value::Null,
        },
        other => other.clone(),
    }
}

fn string_or_empty(v: &Value) -> Value {
    Value::String(v.as_str().unwrap_or_default().to_owned())
}

/// An optional `any` field: left out when absent or null (Go's omitempty on a nil interface).
fn put_any(map: &mut Map<String, Value>, key: &str, v: &Value) {
    if !v.is_null() {
        map.insert(key.into(), go_any(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::python_json_with;
    use serde_json::json;

    #[test]
    fn tools_take_ollamas_shape() {
        let tool = crate::api::dataset::default_tools().remove(0);
        let canonical = ollama_tool(&tool);
        assert_eq!(
            python_json_with(&canonical, None, Some((",", ":"))),
            r#"{"type":"function","function":{"name":"check_traffic_flow","description":"Check if traffic is allowed between source and destination","parameters":{"type":"object","required":["source","destination","port"],"properties":{"destination":{"type":"string","description":"Destination IP address, CIDR or object name"},"port":{"type":"integer","description":"Destination port"},"protocol":{"type":"string","enum":["tcp","udp","icmp","any"]},"source":{"type":"string","description":"Source IP address, CIDR or object name"}}}}}"#
        );
        assert_eq!(ollama_tool(&canonical), canonical, "idempotent");
        let bare = ollama_tool(&json!({"type": "function", "function": {"name": "f"}}));
        assert_eq!(
            python_json_with(&bare, None, Some((",", ":"))),
            r#"{"type":"function","function":{"name":"f","parameters":{"type":"","required":null,"properties":null}}}"#
        );
    }

    #[test]
    fn arguments_are_sorted_and_numbers_go_through_float64() {
        let args = json!({"z": 1, "a": {"y": 2.50, "b": [3.0, "x"]}, "big": 1e22});
        assert_eq!(
            python_json_with(&ollama_arguments(&args), None, Some((",", ":"))),
            r#"{"a":{"b":[3,"x"],"y":2.5},"big":1e+22,"z":1}"#
        );
    }
}
