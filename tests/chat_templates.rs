//! One chat format from training to serving, proven on real conversations: for every conversation of the
//! shipped sample (both splits: tools, system turns, multi-turn, tool results) and a few written to cover the
//! rest, the prompt before its last assistant turn tokenizes to the same ids
//!
//!   - as the trainer renders it (the format's Jinja template, the tokenizer.json tokenizer),
//!   - as the built-in server renders it from the GGUF's own `tokenizer.chat_template` (llama.cpp tokenizer),
//!   - as Ollama renders it from the Modelfile template the operator generates — by Ollama's own Go template
//!     package (tests/ollama), tokenized by llama.cpp the way Ollama's runner does (BOS added by the runner),
//!
//! for both formats: Llama 3 (the tiny Llama 3.1 fixture with the real Llama 3 tokenizer) and ChatML (SmolLM2).
#![cfg(all(feature = "train", feature = "serve"))]

#[path = "support/llama_cpp.rs"]
mod llama_cpp;
#[path = "support/ollama.rs"]
mod ollama;
#[path = "train_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use fireweave_ai::chat::{ChatFormat, ChatTemplate, Message, Role, ToolCall, server_prompt};
use fireweave_ai::gguf::Mix;
use fireweave_ai::gguf::convert::{Request, convert};
use fireweave_ai::hf::Checkpoint;
use fireweave_ai::train::data::{Conversation, read_jsonl, with_system};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use serde_json::{Value, json};

/// The conversations: the sample dataset built by the dataset worker, then hand-written edge cases.
fn conversations(tmp: &Path) -> Vec<Conversation> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/fireweave");
    let args = fireweave_ai::dataset::Args {
        spec: None,
        artifacts: tmp.to_path_buf(),
        input: vec![sample],
        out: Some(tmp.join("data")),
        format: fireweave_ai::dataset::FormatArg::Auto,
        min_score: None,
        near_threshold: None,
        eval_fraction: None,
        seed: None,
        openai: false,
        termination_log: PathBuf::new(),
    };
    let built = fireweave_ai::dataset::run(args).expect("the sample builds");
    let dir = tmp.join("data").join(&built.artifact.uri);
    let mut convs = read_jsonl(&dir.join("eval.jsonl")).unwrap();
    convs.extend(read_jsonl(&dir.join("train.jsonl")).unwrap());
    let tools = fireweave_ai::api::dataset::default_tools();
    let call = |args: Value| {
        Message::tool_calls(vec![ToolCall {
            name: "check_traffic_flow".into(),
            arguments: args,
        }])
    };
    convs.push(Conversation {
        messages: vec![
            Message::system("Answer as the FireWeave assistant."),
            Message::user("Can 10.0.0.5 reach 10.1.0.10 on 443? And on 8443?"),
            call(json!({"source": "10.0.0.5", "destination": "10.1.0.10", "port": 443, "protocol": "tcp"})),
            Message::tool_result("check_traffic_flow", "{\"verdict\": \"allowed\"}"),
            // Text and a call in one turn, as clients send it (Ollama merges consecutive turns of one role
            // and keeps only the first one's calls, so a conversation must not split them).
            Message {
                content: "443 is allowed. Checking 8443 as well.".into(),
                ..call(json!({"source": "10.0.0.5", "destination": "10.1.0.10", "port": 8443}))
            },
            Message::tool_result(
                "check_traffic_flow",
                "{\"verdict\": \"blocked\", \"rule\": \"deny-all\"}",
            ),
            Message::assistant("8443 is blocked by deny-all."),
        ],
        tools: tools.clone(),
    });
    convs.push(Conversation {
        messages: vec![
            Message::user("Hi"),
            Message::assistant("Hello! Ask me about firewall policy."),
            Message::user("  What is a shadowed rule?\n"),
            Message::assistant("A rule that never matches."),
        ],
        tools: Vec::new(),
    });
    convs
}

/// The prompt up to the last assistant turn, as a client would send it.
fn prompt_of(conv: &Conversation) -> Option<Vec<Message>> {
    let last = conv.messages.iter().rposition(|m| m.role == Role::Assistant)?;
    Some(conv.messages[..last].to_vec())
}

/// An Ollama `/api/chat` body for the prompt.
fn ollama_case(messages: &[Message], tools: &[Value]) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut v = json!({"role": m.role.as_str(), "content": m.content});
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            if let Some(name) = &m.tool_name {
                v["tool_name"] = json!(name);
            }
            v
        })
        .collect();
    json!({"messages": messages, "tools": tools})
}

/// A GGUF of the model folder with the training template written in (the quantizer takes the folder's).
fn gguf_with_template(model: &Path, template: &str, tmp: &Path) -> PathBuf {
    let dir = tmp.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(model).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    fireweave_ai::train::export::set_chat_template(&dir, template).unwrap();
    let path = tmp.join("model-Q8_0.gguf");
    let ck = Checkpoint::open(&dir).unwrap();
    convert(
        &ck,
        "m",
        &[Request {
            mix: Mix::Q8_0,
            path: path.clone(),
        }],
        &|_| {},
    )
    .unwrap();
    path
}

fn check_format(model_dir: &Path, want: ChatFormat) {
    let tmp = tempfile::tempdir().unwrap();
    let (format, trainer) = fireweave_ai::train::run::training_template(model_dir).unwrap();
    assert_eq!(format, want);
    let tokenizer = tokenizers::Tokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
    let gguf = gguf_with_template(model_dir, trainer.source(), tmp.path());
    let model = LlamaModel::load_from_file(llama_cpp::backend(), &gguf, &LlamaModelParams::default()).unwrap();
    let vocab = model.vocab();
    let llama_ids = |text: &str, add_bos: bool| -> Vec<u32> {
        vocab
            .tokenize(text.as_bytes(), add_bos, true)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    };
    let text_of = |t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
    let served = ChatTemplate::new(
        &model.chat_template(None).unwrap().to_string().unwrap(),
        &text_of(vocab.bos()),
        &text_of(vocab.eos()),
    )
    .unwrap();
    let system = fireweave_ai::api::model_serving::default_system();

    let convs = conversations(tmp.path());
    let prompts: Vec<(&Conversation, Vec<Message>)> = convs.iter().filter_map(|c| Some((c, prompt_of(c)?))).collect();
    let cases: Vec<Value> = prompts.iter().map(|(c, p)| ollama_case(p, &c.tools)).collect();
    let from_ollama = ollama::ollama_prompts(format.ollama_template(), &system, &cases);
    assert_eq!(from_ollama.len(), prompts.len());
    let (mut with_tools, mut multi_turn, mut tool_results) = (0, 0, 0);
    for (i, ((conv, prompt), ollama_text)) in prompts.iter().zip(&from_ollama).enumerate() {
        // The trainer: its system prompt given to a conversation without one, the training template.
        let trained = with_system(
            &Conversation {
                messages: prompt.clone(),
                tools: conv.tools.clone(),
            },
            &system,
        )
        .into_owned();
        let trainer_text = trainer.render(&trained.messages, &trained.tools, true).unwrap();
        let trainer_ids = tokenizer
            .encode(trainer_text.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        // The built-in server: the GGUF's own template, the server's system rule, llama.cpp's tokenizer.
        let server_text = server_prompt(&served, Some(&system), prompt, &conv.tools).unwrap();
        assert_eq!(server_text, trainer_text, "conversation {i}: built-in server text");
        assert_eq!(
            llama_ids(&server_text, false),
            trainer_ids,
            "conversation {i}: built-in server ids"
        );
        // Ollama: its runner adds BOS when the GGUF says so.
        assert_eq!(
            llama_ids(ollama_text, true),
            trainer_ids,
            "conversation {i}: Ollama's prompt\n{ollama_text:?}\ntrainer's\n{trainer_text:?}"
        );
        with_tools += usize::from(!conv.tools.is_empty());
        multi_turn += usize::from(prompt.iter().filter(|m| m.role == Role::User).count() > 1);
        tool_results += usize::from(prompt.iter().any(|m| m.role == Role::Tool));
    }
    // The comparison can fail: the other format's Modelfile template renders other tokens.
    let other = ChatFormat::ALL.into_iter().find(|f| *f != format).unwrap();
    let wrong = ollama::ollama_prompts(other.ollama_template(), &system, &cases[..1]);
    let trained = with_system(
        &Conversation {
            messages: prompts[0].1.clone(),
            tools: prompts[0].0.tools.clone(),
        },
        &system,
    )
    .into_owned();
    let want = trainer.render(&trained.messages, &trained.tools, true).unwrap();
    assert_ne!(
        llama_ids(&wrong[0], true),
        tokenizer.encode(want.as_str(), false).unwrap().get_ids().to_vec()
    );
    // The proof covers what it claims to.
    assert!(
        with_tools >= 20 && multi_turn >= 3 && tool_results >= 20,
        "{with_tools} {multi_turn} {tool_results}"
    );
    eprintln!(
        "{format}: {} prompts identical in trainer, built-in server and Ollama ({with_tools} with tools, {multi_turn} multi-turn, {tool_results} with tool results)",
        prompts.len()
    );
}

#[test]
fn llama3_prompts_are_identical_from_training_to_both_servers() {
    check_format(&support::fixture("tiny-llama31"), ChatFormat::Llama3);
}

#[test]
fn chatml_prompts_are_identical_from_training_to_both_servers() {
    check_format(&support::fixture("smollm2-135m"), ChatFormat::Chatml);
}
