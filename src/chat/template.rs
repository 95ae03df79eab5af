//! Rendering a model's Jinja chat template the way `transformers.apply_chat_template` does.

use super::{Message, python_json_with};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{dir}: no chat template (looked for chat_template.jinja and tokenizer_config.json \"chat_template\")")]
    Missing { dir: PathBuf },
    #[error("chat template does not compile: {0:#}")]
    Compile(JinjaError),
    #[error("chat template failed to render: {0:#}")]
    Render(JinjaError),
}

/// A compiled chat template plus the special-token strings it may reference.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // transformers compiles templates with these two flags; without them whitespace differs.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // Templates written for Python call string methods (`.strip()`, `.startswith()`, `.items()`).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(TemplateError::Compile)?;
        Ok(ChatTemplate {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Reads the template shipped in a Hugging Face model folder: `chat_template.jinja` (newer
    /// `transformers`) or the `chat_template` field of `tokenizer_config.json` (a string, or a list of
    /// named templates of which "default" is used).
    pub fn from_model_dir(dir: &Path) -> Result<Self, TemplateError> {
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read(&config_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| TemplateError::Json {
                path: config_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(source) => {
                return Err(TemplateError::Io {
                    path: config_path,
                    source,
                });
            }
        };
        let token = |key: &str| -> String {
            match &config[key] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).unwrap_or("").to_owned(),
                _ => String::new(),
            }
        };
        let jinja_path = dir.join("chat_template.jinja");
        let source = match std::fs::read_to_string(&jinja_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match &config["chat_template"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(named) => named
                    .iter()
                    .find(|t| t["name"] == "default")
                    .or_else(|| named.first())
                    .and_then(|t| t["template"].as_str())
                    .ok_or_else(|| TemplateError::Missing { dir: dir.to_owned() })?
                    .to_owned(),
                _ => return Err(TemplateError::Missing { dir: dir.to_owned() }),
            },
            Err(source) => {
                return Err(TemplateError::Io {
                    path: jinja_path,
                    source,
                });
            }
        };
        Self::new(&source, &token("bos_token"), &token("eos_token"))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Renders a conversation. `tools` are JSON tool definitions (`{"type":"function","function":{…}}`);
    /// an empty slice renders as no tools at all, as `transformers` does for `tools=None`.
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let messages: Vec<serde_json::Value> = messages.iter().map(Message::to_template_value).collect();
        // Tools as Ollama hands them to a template (see `ollama_tool`): every renderer prints the same bytes.
        let tools = if tools.is_empty() {
            Value::from(())
        } else {
            let canonical: Vec<serde_json::Value> = tools.iter().map(super::ollama_tool).collect();
            Value::from_serialize(&canonical)
        };
        let ctx = minijinja::context! {
            messages => Value::from_serialize(&messages),
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        let template = self.env.get_template(NAME).map_err(TemplateError::Render)?;
        template.render(ctx).map_err(TemplateError::Render)
    }
}

/// `tojson` as `transformers` defines it (`json.dumps` with `ensure_ascii=False`), with its `indent`,
/// `separators` and `sort_keys` arguments.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut json = serde_json::to_value(&value)
        .map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    if sort_keys == Some(true) {
        json = super::sorted_keys(json);
    }
    let separators = match separators.as_deref() {
        None => None,
        Some([item, key]) => Some((item.as_str(), key.as_str())),
        Some(_) => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "tojson: separators is an (item, key) pair",
            ));
        }
    };
    Ok(Value::from_safe_string(python_json_with(&json, indent, separators)))
}

fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(fmt)`: templates print today's date. Only the formats real templates use are needed;
/// the date is UTC.
fn strftime_now(format: String) -> Result<Value, JinjaError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const FULL: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('b') => out.push_str(MONTHS[(m - 1) as usize]),
            Some('B') => out.push_str(FULL[(m - 1) as usize]),
            Some('%') => out.push('%'),
            other => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.map(String::from).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(Value::from(out))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Message, ToolCall};
    use serde_json::json;

    const LLAMA31: &str = include_str!("templates/llama31.jinja");

    fn llama() -> ChatTemplate {
        ChatTemplate::new(LLAMA31, "<|begin_of_text|>", "<|eot_id|>").unwrap()
    }

    #[test]
    fn llama31_plain_turns() {
        let text = llama()
            .render(
                &[
                    Message::system("Be brief."),
                    Message::user("Hi"),
                    Message::assistant("Hello."),
                ],
                &[],
                false,
            )
            .unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
             Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        );
    }

    #[test]
    fn llama31_tools_calls_and_results() {
        let tool =
            json!({"type": "function", "function": {"name": "check_traffic_flow", "parameters": {"type": "object"}}});
        let call = ToolCall {
            name: "check_traffic_flow".into(),
            arguments: json!({"source": "10.0.0.1", "port": 443}),
        };
        let text = llama()
            .render(
                &[
                    Message::user("Is 443 open?"),
                    Message::tool_calls(vec![call]),
                    Message::tool_result("check_traffic_flow", "{\"allowed\": true}"),
                ],
                &[tool],
                true,
            )
            .unwrap();
        assert!(text.contains("Environment: ipython\n"), "{text}");
        assert!(
            text.contains(
                "{\"type\":\"function\",\"function\":{\"name\":\"check_traffic_flow\",\"parameters\":{\"type\":\"object\",\"required\":null,\"properties\":null}}}\n\n"
            ),
            "tools print as compact JSON in Ollama's shape: {text}"
        );
        assert!(
            text.contains(
                "<|start_header_id|>assistant<|end_header_id|>\n\n\
                 {\"name\": \"check_traffic_flow\", \"parameters\": {\"port\":443,\"source\":\"10.0.0.1\"}}<|eot_id|>"
            ),
            "{text}"
        );
        assert!(text.contains("<|start_header_id|>ipython<|end_header_id|>\n\n{\"allowed\": true}<|eot_id|>"));
        assert!(text.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
    }

    #[test]
    fn python_string_methods_and_errors() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m['content'].strip() | upper }}{% endfor %}\
             {% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(t.render(&[Message::user("  hi ")], &[], false).unwrap(), "HI");
        let err = t
            .render(&[Message::user("a"), Message::user("b")], &[], false)
            .unwrap_err();
        assert!(err.to_string().contains("one message only"), "{err}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_930), (2024, 7, 26));
    }
}
