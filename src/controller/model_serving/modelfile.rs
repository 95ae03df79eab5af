//! The Ollama Modelfile generated from a ModelServing spec. Pure.

use crate::api::model_serving::Modelfile;
use crate::chat::ChatFormat;

/// Renders a Modelfile for the GGUF at `gguf_path` (absolute, inside the serving Pod). The template is the
/// spec's, else the Ollama twin of the chat format the model was trained in; stop strings likewise (the
/// format's own when the spec sets none). A model of unknown format with no template of the spec's is an
/// error naming the field: a wrong template serves garbage, silently.
pub fn render(spec: &Modelfile, gguf_path: &str, format: Option<ChatFormat>) -> Result<String, String> {
    let template = match (&spec.template, format) {
        (Some(t), _) => t.as_str(),
        (None, Some(f)) => f.ollama_template(),
        (None, None) => {
            return Err("spec.modelfile.template: the model's chat format is unknown (a GGUF that is not a TrainingRun's output); set the Ollama template to serve it with"
                .into());
        }
    };
    let stops: Vec<String> = if spec.parameters.stop.is_empty() {
        let f = format.map_or_else(
            || ChatFormat::of_ollama_template(template, "spec.modelfile.template").map_err(|e| e.to_string()),
            Ok,
        )?;
        f.stop().iter().map(|s| s.to_string()).collect()
    } else {
        spec.parameters.stop.clone()
    };
    let p = &spec.parameters;
    let mut out = format!(
        "FROM {gguf_path}\n\nTEMPLATE {}\n\n",
        triple(template, "spec.modelfile.template")?
    );
    for (i, stop) in stops.iter().enumerate() {
        out.push_str(&format!("PARAMETER stop {}\n", quoted(stop, i)?));
    }
    out.push_str(&format!("PARAMETER temperature {}\n", p.temperature));
    out.push_str(&format!("PARAMETER top_p {}\n", p.top_p));
    out.push_str(&format!("PARAMETER top_k {}\n", p.top_k));
    out.push_str(&format!("PARAMETER repeat_penalty {}\n", p.repeat_penalty));
    out.push_str(&format!("PARAMETER num_ctx {}\n", p.num_ctx));
    out.push_str(&format!(
        "\nSYSTEM {}\n",
        triple(&spec.system, "spec.modelfile.system")?
    ));
    Ok(out)
}

// Ollama's Modelfile parser has no escapes: a quoted value is the text between its first and last quotes, and it
// ends at the first line break after which the buffered text ends in the closing quotes. So nothing can be
// escaped, only refused, and the refusal names the field (tests/ollama_template.rs reads our output back with
// that parser).

/// `"""text"""`; text holding `"""` would end the block early.
fn triple(text: &str, field: &str) -> Result<String, String> {
    if text.contains("\"\"\"") {
        return Err(format!(
            "{field}: contains \"\"\", which an Ollama Modelfile cannot quote (it has no escapes)"
        ));
    }
    Ok(format!("\"\"\"{text}\"\"\""))
}

/// `"stop"`: a quote followed by a line break would end the value early, so quotes and line breaks are refused.
fn quoted(stop: &str, index: usize) -> Result<String, String> {
    if stop.contains(['"', '\n', '\r']) {
        return Err(format!(
            "spec.modelfile.parameters.stop[{index}]: {stop:?} holds a quote or a line break, which an Ollama Modelfile cannot quote"
        ));
    }
    Ok(format!("\"{stop}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_modelfile_carries_the_seed_settings() {
        let text = render(
            &Modelfile::default(),
            "/artifacts/runs/ai/fw/gguf/fw-Q4_K_M.gguf",
            Some(ChatFormat::Llama3),
        )
        .unwrap();
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
        assert!(text.contains(ChatFormat::Llama3.ollama_template()));
    }

    #[test]
    fn the_template_and_stops_follow_the_chat_format_and_an_unknown_one_is_named() {
        let text = render(&Modelfile::default(), "/m.gguf", Some(ChatFormat::Chatml)).unwrap();
        assert!(text.contains(ChatFormat::Chatml.ollama_template()), "{text}");
        let stops: Vec<&str> = text.lines().filter(|l| l.starts_with("PARAMETER stop")).collect();
        assert_eq!(
            stops,
            ["PARAMETER stop \"<|im_start|>\"", "PARAMETER stop \"<|im_end|>\""]
        );
        let err = render(&Modelfile::default(), "/m.gguf", None).unwrap_err();
        assert!(err.starts_with("spec.modelfile.template: "), "{err}");
        // A template of the spec's own serves any GGUF; the spec's stops win over the format's.
        let spec = Modelfile {
            template: Some("{{ .Prompt }}".into()),
            parameters: crate::api::model_serving::ModelParameters {
                stop: vec!["END".into()],
                ..Default::default()
            },
            ..Modelfile::default()
        };
        let text = render(&spec, "/m.gguf", None).unwrap();
        assert!(text.contains("TEMPLATE \"\"\"{{ .Prompt }}\"\"\"") && text.contains("PARAMETER stop \"END\""));
    }

    #[test]
    fn text_a_modelfile_cannot_quote_is_refused_naming_the_field() {
        let system = Modelfile {
            system: "say \"\"\"hi\"\"\"".into(),
            ..Modelfile::default()
        };
        let err = render(&system, "/m.gguf", Some(ChatFormat::Llama3)).unwrap_err();
        assert!(err.starts_with("spec.modelfile.system: "), "{err}");
        let template = Modelfile {
            template: Some("{{ .Prompt }}\"\"\"".into()),
            ..Modelfile::default()
        };
        let err = render(&template, "/m.gguf", None).unwrap_err();
        assert!(err.starts_with("spec.modelfile.template: "), "{err}");
        let stop = Modelfile {
            parameters: crate::api::model_serving::ModelParameters {
                stop: vec!["END".into(), "say \"x\"".into()],
                ..Default::default()
            },
            ..Modelfile::default()
        };
        let err = render(&stop, "/m.gguf", Some(ChatFormat::Llama3)).unwrap_err();
        assert!(err.starts_with("spec.modelfile.parameters.stop[1]: "), "{err}");
        // Single quotes and backslashes need nothing: the parser keeps them as they are.
        let plain = Modelfile {
            system: "Use \"show run\" or C:\\fw\\rules.txt".into(),
            ..Modelfile::default()
        };
        let text = render(&plain, "/m.gguf", Some(ChatFormat::Llama3)).unwrap();
        assert!(
            text.ends_with("SYSTEM \"\"\"Use \"show run\" or C:\\fw\\rules.txt\"\"\"\n"),
            "{text}"
        );
    }
}
