//! The Ollama Modelfile generated from a ModelServing spec. Pure.

use crate::api::model_serving::Modelfile;

/// Llama 3.1's chat format in Ollama's Go template language, with tool calling: tools are listed in the
/// system turn, a tool call is a JSON object `{"name", "parameters"}` as the assistant's whole reply, and tool
/// results come back in `ipython` turns — the layout Llama 3.1 Instruct was trained on and our trainer renders.
pub const LLAMA31_TOOLS_TEMPLATE: &str = r#"<|begin_of_text|>
{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>
{{- if .System }}

{{ .System }}
{{- end }}
{{- if .Tools }}

You can call the following functions. To call one, reply with only a JSON object of the form {"name": function name, "parameters": object of argument names and values}.
{{- range .Tools }}
{{ . }}
{{- end }}
{{- end }}<|eot_id|>
{{- end }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ $m.Content }}<|eot_id|>
{{- if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq $m.Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ if $m.ToolCalls }}
{{- range $m.ToolCalls }}{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}
{{- else }}{{ $m.Content }}
{{- end }}
{{- if not $last }}<|eot_id|>{{ end }}
{{- else if eq $m.Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ $m.Content }}<|eot_id|>
{{- if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- end }}"#;

/// Renders a Modelfile for the GGUF at `gguf_path` (absolute, inside the serving Pod).
pub fn render(spec: &Modelfile, gguf_path: &str) -> String {
    let template = spec.template.as_deref().unwrap_or(LLAMA31_TOOLS_TEMPLATE);
    let p = &spec.parameters;
    let mut out = format!(
        "FROM {gguf_path}\n\nTEMPLATE \"\"\"{}\"\"\"\n\n",
        escape_triple(template)
    );
    for stop in &p.stop {
        out.push_str(&format!("PARAMETER stop {}\n", quote(stop)));
    }
    out.push_str(&format!("PARAMETER temperature {}\n", p.temperature));
    out.push_str(&format!("PARAMETER top_p {}\n", p.top_p));
    out.push_str(&format!("PARAMETER top_k {}\n", p.top_k));
    out.push_str(&format!("PARAMETER repeat_penalty {}\n", p.repeat_penalty));
    out.push_str(&format!("PARAMETER num_ctx {}\n", p.num_ctx));
    out.push_str(&format!("\nSYSTEM \"\"\"{}\"\"\"\n", escape_triple(&spec.system)));
    out
}

/// Ollama's Modelfile parser ends a triple-quoted value at the next `"""`; break any inside the text.
fn escape_triple(s: &str) -> String {
    s.replace("\"\"\"", "\"\\\"\"")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_modelfile_carries_the_seed_settings() {
        let text = render(&Modelfile::default(), "/artifacts/runs/ai/fw/gguf/fw-Q4_K_M.gguf");
        assert!(text.starts_with("FROM /artifacts/runs/ai/fw/gguf/fw-Q4_K_M.gguf\n"));
        for line in [
            "PARAMETER stop \"<|start_header_id|>\"",
            "PARAMETER stop \"<|end_header_id|>\"",
            "PARAMETER stop \"<|eot_id|>\"",
            "PARAMETER stop \"<|reserved_special_token\"",
            "PARAMETER temperature 0.7",
            "PARAMETER top_p 0.9",
            "PARAMETER top_k 40",
            "PARAMETER repeat_penalty 1.1",
            "PARAMETER num_ctx 4096",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("SYSTEM \"\"\"You are a Network Security Expert with deep expertise in:\n- Firewall"));
        assert!(text.contains("{{ if $m.ToolCalls }}") && text.contains("<|start_header_id|>ipython<|end_header_id|>"));
    }

    #[test]
    fn triple_quotes_in_a_system_prompt_cannot_end_the_block() {
        let spec = Modelfile {
            system: "say \"\"\"hi\"\"\"".into(),
            ..Modelfile::default()
        };
        let text = render(&spec, "/m.gguf");
        let system = text.split("SYSTEM \"\"\"").nth(1).expect("system block");
        assert_eq!(system.matches("\"\"\"").count(), 1, "{system}");
    }
}
