//! JSON written exactly as Python's `json.dumps(value, ensure_ascii=False, indent=…)` writes it.
//!
//! Chat templates print tool schemas and call arguments with `tojson`; `transformers` implements that
//! with `json.dumps`, whose separators (`", "` and `": "` without indent, `","` with it) differ from
//! serde_json's compact form. Token ids only match the reference when the bytes match.

use serde_json::Value;
use std::fmt::Write;

pub fn python_json(value: &Value, indent: Option<usize>) -> String {
    python_json_with(value, indent, None)
}

/// `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)`: `separators` is the
/// (item, key) pair, as templates pass it for compact JSON (`tojson(separators=(',', ':'))`).
pub fn python_json_with(value: &Value, indent: Option<usize>, separators: Option<(&str, &str)>) -> String {
    let (item, key) = separators.unwrap_or(if indent.is_some() { (",", ": ") } else { (", ", ": ") });
    let mut out = String::new();
    write_value(&mut out, value, &Style { indent, item, key }, 0);
    out
}

struct Style<'a> {
    indent: Option<usize>,
    item: &'a str,
    key: &'a str,
}

fn write_value(out: &mut String, value: &Value, style: &Style<'_>, depth: usize) {
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, i, style, depth + 1);
                write_value(out, item, style, depth + 1);
            }
            close(out, ']', style.indent, depth);
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                separator(out, i, style, depth + 1);
                write_string(out, key);
                out.push_str(style.key);
                write_value(out, item, style, depth + 1);
            }
            close(out, '}', style.indent, depth);
        }
        Value::String(s) => write_string(out, s),
        Value::Number(n) => write_number(out, n),
        other => out.push_str(&other.to_string()),
    }
}

fn separator(out: &mut String, index: usize, style: &Style<'_>, depth: usize) {
    if index > 0 {
        out.push_str(style.item);
    }
    if let Some(width) = style.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', width * depth));
    }
}

fn close(out: &mut String, bracket: char, indent: Option<usize>, depth: usize) {
    if let Some(width) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', width * depth));
    }
    out.push(bracket);
}

fn write_string(out: &mut String, s: &str) {
    // serde_json escapes the same set Python does with ensure_ascii=False, except that Python writes
    // the remaining control characters as \u00XX — as does serde_json — so the output agrees.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        // Python's float repr: always a decimal point or an exponent; exponents with two digits.
        if f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
            let _ = write!(out, "{f:.1}");
            return;
        }
        let s = format!("{f:?}");
        if let Some((mantissa, exp)) = s.split_once('e') {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
        } else {
            out.push_str(&s);
        }
        return;
    }
    out.push_str(&n.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_uses_python_separators() {
        let v = json!({"source": "10.0.0.1", "port": 443, "tags": ["a", "b"], "x": {}});
        assert_eq!(
            python_json(&v, None),
            r#"{"source": "10.0.0.1", "port": 443, "tags": ["a", "b"], "x": {}}"#
        );
    }

    #[test]
    fn indented_matches_json_dumps_indent_4() {
        let v = json!({"name": "f", "parameters": {"type": "object", "required": ["a"]}});
        let want = "{\n    \"name\": \"f\",\n    \"parameters\": {\n        \"type\": \"object\",\n        \"required\": [\n            \"a\"\n        ]\n    }\n}";
        assert_eq!(python_json(&v, Some(4)), want);
    }

    #[test]
    fn custom_separators_give_compact_json() {
        let v = json!({"b": 1, "a": [1, 2], "s": "<&>"});
        assert_eq!(
            python_json_with(&v, None, Some((",", ":"))),
            r#"{"b":1,"a":[1,2],"s":"<&>"}"#
        );
    }

    #[test]
    fn floats_print_like_python_repr() {
        assert_eq!(python_json(&json!(1.0), None), "1.0");
        assert_eq!(python_json(&json!(0.7), None), "0.7");
        assert_eq!(python_json(&json!(1e-5), None), "1e-05");
        assert_eq!(python_json(&json!("é\n"), None), "\"é\\n\"");
    }
}
