//! The fixture checkpoints load through our memory-mapped reader into libtorch with the shapes their
//! config.json implies, and the Llama 3 tokenizer encodes chats to the special ids of the format.
#![cfg(feature = "train")]

mod support;

use fireweave_ai::chat::{ChatTemplate, Message, Role, ToolCall};
use fireweave_ai::hf::Checkpoint;
use fireweave_ai::train::weights;
use support::{CHECKPOINTS, fixtures, reference};
use tch::{Device, Kind};

#[test]
fn every_fixture_tensor_loads_into_tch_with_the_configured_shape() {
    for name in CHECKPOINTS {
        let ck = Checkpoint::open(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        ck.validate_shapes().unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = ck.config().expected_shapes();
        assert_eq!(
            ck.names().count(),
            expected.len(),
            "{name}: tensors beyond those config.json implies"
        );
        for (tensor, shape) in expected {
            let t = weights::load(&ck, &tensor, Kind::Float, Device::Cpu).unwrap();
            let dims: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            assert_eq!(dims, shape, "{name}: {tensor}");
            assert_eq!(t.kind(), Kind::Float);
        }
        let c = ck.config();
        assert_eq!(c.tie_word_embeddings, !ck.contains("lm_head.weight"), "{name}");
    }
    let tiny = Checkpoint::open(&fixtures().join("tiny-llama31")).unwrap();
    assert_eq!(
        tiny.config().hidden_size % 256,
        0,
        "the K-quant fixture needs rows that are multiples of 256"
    );
    let gqa = Checkpoint::open(&fixtures().join("tiny-llama31-gqa-tied")).unwrap();
    assert!(gqa.config().num_key_value_heads < gqa.config().num_attention_heads);
}

/// Our template rendering plus the `tokenizers` crate give exactly the text and ids `transformers` gave.
#[test]
fn chat_rendering_and_tokenization_match_transformers() {
    for name in CHECKPOINTS {
        let dir = fixtures().join(name);
        let template = ChatTemplate::from_model_dir(&dir).unwrap();
        let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let reference = reference(name);
        let cases = reference["cases"].as_array().unwrap();
        assert!(!cases.is_empty());
        for (i, case) in cases.iter().enumerate() {
            let messages: Vec<Message> = case["messages"].as_array().unwrap().iter().map(to_message).collect();
            let tools = case["tools"].as_array().cloned().unwrap_or_default();
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let text = template.render(&messages, &tools, add).unwrap();
            assert_eq!(
                text,
                case["text"].as_str().unwrap(),
                "{name} case {i}: rendered text differs"
            );
            let ids = tokenizer.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            let want: Vec<u32> = case["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(ids, want, "{name} case {i}: token ids differ");
        }
    }
}

#[test]
fn llama3_tokenizer_gives_the_special_ids_of_the_format() {
    let dir = fixtures().join("llama3-tokenizer");
    let template = ChatTemplate::from_model_dir(&dir).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let text = template
        .render(
            &[Message::system("Be precise."), Message::user("Is port 22 open?")],
            &[],
            true,
        )
        .unwrap();
    let ids = tokenizer.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    // <|begin_of_text|> <|start_header_id|> system <|end_header_id|> … <|eot_id|> …, from the Llama 3.1 format.
    assert_eq!(ids[0], 128000);
    assert_eq!(ids[1], 128006);
    assert_eq!(ids[3], 128007);
    assert_eq!(
        ids.iter().filter(|&&t| t == 128009).count(),
        2,
        "one <|eot_id|> per finished turn"
    );
    assert_eq!(
        ids.iter().filter(|&&t| t == 128006).count(),
        3,
        "system, user and the generation prompt"
    );
    for (token, id) in [
        ("<|end_of_text|>", 128001),
        ("<|finetune_right_pad_id|>", 128004),
        ("<|eom_id|>", 128008),
        ("<|python_tag|>", 128010),
    ] {
        assert_eq!(tokenizer.token_to_id(token), Some(id), "{token}");
    }
    // The tokenizer's own post-processor adds <|begin_of_text|> when asked to (GGUF's add_bos_token).
    let plain = tokenizer.encode("hello", true).unwrap();
    assert_eq!(plain.get_ids()[0], 128000);
}

fn to_message(v: &serde_json::Value) -> Message {
    let role: Role = serde_json::from_value(v["role"].clone()).unwrap();
    let mut m = Message::new(role, v["content"].as_str().unwrap_or_default());
    if let Some(calls) = v["tool_calls"].as_array() {
        m.tool_calls = calls
            .iter()
            .map(|c| ToolCall {
                name: c["function"]["name"].as_str().unwrap().to_owned(),
                arguments: c["function"]["arguments"].clone(),
            })
            .collect();
    }
    m.tool_name = v["name"].as_str().map(str::to_owned);
    m
}
