//! Chat formats: the families of chat templates we train, serve and prove identical. A model's format is read
//! from its own chat template; each format has a tools-capable Jinja template (what the trainer renders and
//! what goes into the GGUF's `tokenizer.chat_template`, so the built-in server renders it too), the same
//! format as an Ollama Go template (for `engine: ollama` Modelfiles), and the stop strings that end a turn.
//! Tests render the Go template with Ollama's own template package and compare token ids with the Jinja one.

use std::fmt;

use super::ChatTemplate;

/// A chat-template family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatFormat {
    /// Llama 3.x: `<|start_header_id|>role<|end_header_id|>` headers, `<|eot_id|>` ends a turn.
    Llama3,
    /// ChatML (SmolLM2, Qwen): `<|im_start|>role` … `<|im_end|>`.
    Chatml,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field}: the chat template is of no family fireweave-ai can train and serve with tools (Llama 3 headers \
     <|start_header_id|>, or ChatML <|im_start|>); set spec.modelfile.template to a template of one of them"
)]
pub struct UnknownFormat {
    pub field: String,
}

const LLAMA3_JINJA: &str = include_str!("templates/llama31.jinja");
const CHATML_JINJA: &str = include_str!("templates/chatml_tools.jinja");
const LLAMA3_OLLAMA: &str = include_str!("templates/llama3.gotmpl");
const CHATML_OLLAMA: &str = include_str!("templates/chatml_tools.gotmpl");

impl ChatFormat {
    pub const ALL: [ChatFormat; 2] = [ChatFormat::Llama3, ChatFormat::Chatml];

    /// The family of a Jinja chat template, by the turn markers it writes. `field` names where the template
    /// came from, for the error.
    pub fn of_template(source: &str, field: &str) -> Result<Self, UnknownFormat> {
        if source.contains("<|start_header_id|>") && source.contains("<|eot_id|>") {
            Ok(ChatFormat::Llama3)
        } else if source.contains("<|im_start|>") && source.contains("<|im_end|>") {
            Ok(ChatFormat::Chatml)
        } else {
            Err(UnknownFormat {
                field: field.to_owned(),
            })
        }
    }

    /// The family of an Ollama Go template: one of ours exactly, or by its turn markers.
    pub fn of_ollama_template(source: &str, field: &str) -> Result<Self, UnknownFormat> {
        Self::ALL
            .into_iter()
            .find(|f| f.ollama_template() == source)
            .map_or_else(|| Self::of_template(source, field), Ok)
    }

    /// The tools-capable Jinja template we train with and write into the GGUF.
    pub fn jinja(self) -> &'static str {
        match self {
            ChatFormat::Llama3 => LLAMA3_JINJA,
            ChatFormat::Chatml => CHATML_JINJA,
        }
    }

    /// The same format in Ollama's Go template language, for the Modelfile's TEMPLATE.
    pub fn ollama_template(self) -> &'static str {
        match self {
            ChatFormat::Llama3 => LLAMA3_OLLAMA,
            ChatFormat::Chatml => CHATML_OLLAMA,
        }
    }

    /// Strings that end an assistant turn; a server stops generating at any of them.
    pub fn stop(self) -> &'static [&'static str] {
        match self {
            // The seed Modelfile's four, and the end of a built-in tool call.
            ChatFormat::Llama3 => &[
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
                "<|reserved_special_token",
                "<|eom_id|>",
            ],
            ChatFormat::Chatml => &["<|im_start|>", "<|im_end|>"],
        }
    }

    /// The training template compiled with a model's special tokens.
    pub fn template(self, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, super::TemplateError> {
        ChatTemplate::new(self.jinja(), bos_token, eos_token)
    }
}

impl fmt::Display for ChatFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChatFormat::Llama3 => "llama3",
            ChatFormat::Chatml => "chatml",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Message, ToolCall};

    #[test]
    fn families_are_recognized_and_the_rest_is_named() {
        assert_eq!(ChatFormat::of_template(LLAMA3_JINJA, "x"), Ok(ChatFormat::Llama3));
        assert_eq!(ChatFormat::of_template(CHATML_JINJA, "x"), Ok(ChatFormat::Chatml));
        for f in ChatFormat::ALL {
            assert_eq!(ChatFormat::of_ollama_template(f.ollama_template(), "x"), Ok(f));
        }
        let err = ChatFormat::of_template("[INST] {{ messages }} [/INST]", "spec.modelfile.template").unwrap_err();
        assert!(err.to_string().starts_with("spec.modelfile.template: "), "{err}");
    }

    #[test]
    fn chatml_plain_turns_and_tools() {
        let t = ChatFormat::Chatml.template("", "<|im_end|>").unwrap();
        let plain = t
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
            plain,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
        );
        let tool = serde_json::json!({"type": "function", "function": {"name": "check_traffic_flow"}});
        let call = ToolCall {
            name: "check_traffic_flow".into(),
            arguments: serde_json::json!({"port": 443}),
        };
        let text = t
            .render(
                &[
                    Message::system("S"),
                    Message::user("Open?"),
                    Message::tool_calls(vec![call]),
                    Message::tool_result("check_traffic_flow", "{\"allowed\": true}"),
                ],
                &[tool],
                true,
            )
            .unwrap();
        assert!(
            text.starts_with("<|im_start|>system\nS\n\nYou can call these functions."),
            "{text}"
        );
        assert!(
            text.contains("<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"check_traffic_flow\",\"parameters\":{\"type\":\"\",\"required\":null,\"properties\":null}}}\n</tools>"),
            "{text}"
        );
        assert!(
            text.contains("<|im_start|>assistant\n<tool_call>\n{\"name\":\"check_traffic_flow\",\"arguments\":{\"port\":443}}\n</tool_call><|im_end|>\n"),
            "{text}"
        );
        assert!(text.contains("<|im_start|>tool\n<tool_response>\n{\"allowed\": true}\n</tool_response><|im_end|>\n"));
        assert!(text.ends_with("<|im_start|>assistant\n"));
    }
}
