//! The prompts Ollama renders, through Ollama's own Go code (tests/support/ollama.rs, release pinned in
//! tests/ollama/go.mod). First the harness is held to outputs that follow from Ollama's source at that release —
//! the Modelfile SYSTEM rule, the merging of turns, how tool-call arguments and tools print, when tools and
//! thinking are accepted — then each chat format's Ollama template is rendered on two conversations, directly
//! and through the Modelfile the operator writes.

#[path = "support/ollama.rs"]
mod ollama;

use clap::{CommandFactory, Parser};
use fireweave_ai::api::dataset::default_tools;
use fireweave_ai::api::model_serving::Modelfile;
use fireweave_ai::chat::ChatFormat;
use fireweave_ai::controller::model_serving::modelfile;
use ollama::{ollama_modelfile_prompts, ollama_prompts, ollama_render};
use serde_json::{Value, json};

/// Every message as `<role>content`, nothing else.
const ROLES: &str = "{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}";

fn user(content: &str) -> Value {
    json!({"role": "user", "content": content})
}

fn case(messages: &[Value]) -> Value {
    json!({"messages": messages})
}

/// server/routes.go ChatHandler (v0.12.6, lines 1970-1973): the Modelfile SYSTEM goes in front as a system
/// message when the request's *first* message is not one; a system message later on does not stop it. Roles
/// are lower-cased when the request is read (api/types.go Message.UnmarshalJSON).
#[test]
fn modelfile_system_is_inserted_unless_the_first_message_is_a_system_message() {
    let cases = [
        case(&[user("hi")]),
        case(&[json!({"role": "System", "content": "mine"}), user("hi")]),
        case(&[
            user("a"),
            json!({"role": "assistant", "content": "b"}),
            json!({"role": "system", "content": "late"}),
            user("c"),
        ]),
    ];
    assert_eq!(
        ollama_prompts(ROLES, "S", &cases),
        [
            "<system>S<user>hi",
            "<system>mine<user>hi",
            "<system>S<user>a<assistant>b<system>late<user>c"
        ]
    );
    // A Modelfile without SYSTEM inserts nothing.
    assert_eq!(ollama_prompts(ROLES, "", &cases[..1]), ["<user>hi"]);
}

/// template/template.go collate: consecutive messages of one role become one, joined by a blank line (tool
/// results excepted), and `.System` is every system message joined the same way.
#[test]
fn consecutive_turns_of_one_role_are_merged_and_system_collects_every_system_message() {
    let template = format!("{{{{ .System }}}}|{ROLES}");
    let tool = |c: &str| json!({"role": "tool", "content": c, "tool_name": "f"});
    let cases = [case(&[
        user("a"),
        user("b"),
        json!({"role": "system", "content": "late"}),
        tool("r1"),
        tool("r2"),
    ])];
    assert_eq!(
        ollama_prompts(&template, "S", &cases),
        ["S\n\nlate|<system>S<user>a\n\nb<system>late<tool>r1<tool>r2"]
    );
}

/// `{{ .Function.Arguments }}` prints through api.ToolCallFunctionArguments.String (api/types.go:214), which is
/// Go's json.Marshal of a map[string]any: compact, keys sorted at every level, `<`, `>` and `&` escaped as
/// \u003c \u003e \u0026, non-ASCII as is, numbers read as float64 (so 1.50 prints 1.5 and an integer beyond
/// 2^53 is rounded). `{{ json ... }}` prints the same; `{{ .Function }}` is Go's struct syntax, not JSON.
#[test]
fn tool_call_arguments_print_as_go_json_with_sorted_keys() {
    let arguments = json!({
        "z": 1, "a": "<b> & é", "m": 1.50, "big": 12345678901234567890u64,
        "l": [1, "two", null], "o": {"y": 2, "b": true}
    });
    let call = json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]});
    let template = "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }} {{ .Function.Arguments }}\n\
                    {{ json .Function.Arguments }}\n{{ .Function }}{{ end }}{{ end }}";
    let args = r#"{"a":"\u003cb\u003e \u0026 é","big":12345678901234567000,"l":[1,"two",null],"m":1.5,"o":{"b":true,"y":2},"z":1}"#;
    assert_eq!(
        ollama_prompts(template, "", &[case(&[user("q"), call])]),
        [format!(
            "f {args}\n{args}\n{{0 f map[a:<b> & é big:1.2345678901234567e+19 l:[1 two <nil>] m:1.5 o:map[b:true y:2] z:1]}}"
        )]
    );
}

/// `{{ . }}` on a tool prints api.Tool.String (api/types.go:171), json.Marshal of Ollama's Tool struct — not
/// the JSON the client sent: keys in the struct's order (type, function: name, description, parameters: type,
/// required, properties), properties sorted, `required` null when absent, and every schema keyword the struct
/// lacks dropped (`minimum`, `maximum`, `additionalProperties`, `default`, a nested object's `properties`...).
/// `{{ .Tools }}` is the JSON array. Only a template that names `.Messages` sees `.Tools` at all: any other is
/// executed turn by turn with .System/.Prompt/.Response only (template/template.go Execute), so its `.Tools` is
/// missing although the tools capability check (which only asks whether `.Tools` is named) passes.
#[test]
fn tools_print_as_json_of_ollamas_tool_struct() {
    let check_traffic_flow = default_tools()[0].clone();
    assert_eq!(check_traffic_flow["function"]["name"], "check_traffic_flow");
    let bare = json!({"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {
        "o": {"type": "object", "properties": {"k": {"type": "string"}}, "default": {}}
    }}}});
    let cases = [json!({"messages": [user("q")], "tools": [check_traffic_flow, bare]})];
    let printed = ollama_prompts(
        "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ . }}\n{{ end }}{{ .Tools }}",
        "",
        &cases,
    );

    let one = concat!(
        r#"{"type":"function","function":{"name":"check_traffic_flow","#,
        r#""description":"Check if traffic is allowed between source and destination","#,
        r#""parameters":{"type":"object","required":["source","destination","port"],"properties":{"#,
        r#""destination":{"type":"string","description":"Destination IP address, CIDR or object name"},"#,
        r#""port":{"type":"integer","description":"Destination port"},"#,
        r#""protocol":{"type":"string","enum":["tcp","udp","icmp","any"]},"#,
        r#""source":{"type":"string","description":"Source IP address, CIDR or object name"}}}}}"#
    );
    let two = r#"{"type":"function","function":{"name":"g","parameters":{"type":"object","required":null,"properties":{"o":{"type":"object"}}}}}"#;
    assert_eq!(printed, [format!("{one}\n{two}\n[{one},{two}]")]);
    assert_eq!(
        ollama_prompts("{{ range .Tools }}{{ . }}\n{{ end }}{{ .Tools }}", "", &cases),
        ["<no value>"]
    );
}

/// server/images.go Capabilities: a request with tools needs a template that names `.Tools` anywhere
/// (Template.Vars); otherwise Ollama answers 400 "<model> does not support tools".
#[test]
fn tools_are_refused_by_a_template_that_never_names_them() {
    let input = json!({"template": ROLES, "cases": [{"messages": [user("q")], "tools": default_tools()}]});
    let err = ollama_render(&input).expect_err("a template without .Tools takes no tools");
    assert!(err.contains("does not support tools"), "{err}");
    // The same request without tools renders.
    assert_eq!(ollama_prompts(ROLES, "", &[case(&[user("q")])]), ["<user>q"]);
}

/// server/routes.go:1936-1946 with server/images.go:132-136: thinking is on by default (Think true, ThinkLevel
/// "medium", IsThinkSet true) exactly when thinking.InferTags finds tags around `.Thinking` in the range over
/// `.Messages`; without them `think: true` is refused and the flags stay at their zero values.
#[test]
fn thinking_is_on_by_default_only_for_a_template_with_thinking_tags() {
    let flags = "{{ .Think }}|{{ .ThinkLevel }}|{{ .IsThinkSet }}";
    let thinks = format!(
        "{{{{ range .Messages }}}}{{{{ if .Thinking }}}}<think>{{{{ .Thinking }}}}</think>{{{{ end }}}}{{{{ .Content }}}}{{{{ end }}}}{flags}"
    );
    let plain = format!("{ROLES}{flags}");
    assert_eq!(
        ollama_prompts(&thinks, "", &[case(&[user("q")])]),
        ["qtrue|medium|true"]
    );
    assert_eq!(
        ollama_prompts(&plain, "", &[case(&[user("q")])]),
        ["<user>qfalse||false"]
    );
    let input = json!({"template": plain, "cases": [{"messages": [user("q")], "think": true}]});
    let err = ollama_render(&input).expect_err("no thinking tags, no thinking");
    assert!(err.contains("does not support thinking"), "{err}");
}

/// The renderer is built from the release the operator serves with: the default `--ollama-image` tag.
#[test]
fn renderer_is_pinned_to_the_operators_default_ollama_image() {
    #[derive(Parser)]
    struct Operator {
        #[command(flatten)]
        args: fireweave_ai::controller::config::Args,
    }
    let command = Operator::command();
    let image = command
        .get_arguments()
        .find(|a| a.get_id() == "ollama_image")
        .and_then(|a| a.get_default_values().first())
        .and_then(|v| v.to_str())
        .expect("--ollama-image has a default")
        .to_owned();
    let tag = image.rsplit_once(':').map(|(_, t)| t).expect("a tagged image");
    assert_eq!(format!("v{tag}"), ollama::pinned_version(), "{image}");
}

/// A tool call in Ollama's request shape.
fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": name, "arguments": arguments}}]})
}

/// A plain multi-turn conversation, and one with the seed's tools, a tool call and its result.
fn conversations() -> Vec<Value> {
    vec![
        case(&[
            user("What does a stateful firewall track?"),
            json!({"role": "assistant", "content": "Connection state: each flow's 5-tuple and TCP state."}),
            user("And a stateless one?"),
        ]),
        json!({"messages": [
            user("Can 10.0.0.5 reach 10.0.1.10 on port 443?"),
            tool_call("check_traffic_flow", json!({"source": "10.0.0.5", "destination": "10.0.1.10", "port": 443, "protocol": "tcp"})),
            json!({"role": "tool", "content": "{\"allowed\": true, \"rule\": \"allow-web\"}", "tool_name": "check_traffic_flow"}),
        ], "tools": default_tools()}),
    ]
}

/// Each format's Ollama template renders both conversations (with the seed's Modelfile SYSTEM), and each
/// prompt ends by opening the assistant's turn. Whether it equals the trainer's prompt token for token is for
/// the comparison tests.
#[test]
fn ollama_templates_render_a_plain_and_a_tool_conversation() {
    let system = Modelfile::default().system;
    for format in ChatFormat::ALL {
        let assistant = match format {
            ChatFormat::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatFormat::Chatml => "<|im_start|>assistant\n",
        };
        let prompts = ollama_prompts(format.ollama_template(), &system, &conversations());
        for (i, p) in prompts.iter().enumerate() {
            println!("--- {format} Ollama template, conversation {i} ---\n{p}\n---");
            assert!(p.ends_with(assistant), "{format}, conversation {i}:\n{p}");
        }
    }
}

/// The Modelfile the operator writes, read by Ollama's own Modelfile parser (as `ollama create -f` does), gives
/// the same prompts as its TEMPLATE and SYSTEM passed directly: nothing is lost between `modelfile::render` and
/// the server.
#[test]
fn operator_modelfile_reads_back_as_its_template_and_system() {
    // The seed's system prompt, and one with the quotes and backslashes a security answer is full of (the
    // parser has no escapes, so they must be written as they are; `"""` is refused by `render`).
    let quoting = Modelfile {
        system: "Run \"show access-list\" first; rules live in C:\\fw\\rules.txt.\n\"Deny\" wins over 'allow'.\""
            .into(),
        ..Modelfile::default()
    };
    for spec in [Modelfile::default(), quoting] {
        for format in ChatFormat::ALL {
            let text = modelfile::render(&spec, "/artifacts/runs/ai/fw/gguf/fw-Q4_K_M.gguf", Some(format))
                .unwrap_or_else(|e| panic!("{format}: {e}"));
            let cases = conversations();
            assert_eq!(
                ollama_modelfile_prompts(&text, &cases),
                ollama_prompts(format.ollama_template(), &spec.system, &cases),
                "{format}: {:?}",
                spec.system
            );
        }
    }
}
