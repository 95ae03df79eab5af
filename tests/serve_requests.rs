//! The server's request parsing, without a model: a malformed body is an error that names the field it is in
//! (the handlers answer it with 400 and go on serving), never a panic. Regression cases from the
//! `serve_request` fuzz target (tests/fuzz) live here too.

use fireweave_ai::serve::api::{
    ChatRequest, EmbedRequest, GenerateRequest, OpenAiChatRequest, parse_body, to_messages,
};
use fireweave_ai::serve::options::Options;

fn chat_error(body: &str) -> String {
    match parse_body::<ChatRequest>(body.as_bytes()) {
        Ok(req) => to_messages(&req.messages).expect_err(body),
        Err(e) => e,
    }
}

fn openai_error(body: &str) -> String {
    let req = match parse_body::<OpenAiChatRequest>(body.as_bytes()) {
        Ok(req) => req,
        Err(e) => return e,
    };
    if let Err(e) = to_messages(&req.messages) {
        return e;
    }
    let problems = [req.options().err(), req.format().err(), req.logit_bias().err()];
    problems
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_else(|| panic!("accepted: {body}"))
}

#[test]
fn malformed_bodies_name_the_field() {
    let cases = [
        (r#"{"model": "m", "messages": 5}"#, "messages"),
        (
            r#"{"model": "m", "messages": [{"content": "hi"}]}"#,
            "messages[0]: missing field `role`",
        ),
        (
            r#"{"model": "m", "messages": [{"role": "user", "content": "hi", "tool_calls": [{"function": {"name": 5}}]}]}"#,
            "messages[0].tool_calls[0].function.name",
        ),
        (
            r#"{"model": "m", "options": {"temperature": "hot"}}"#,
            "options.temperature",
        ),
        (r#"{"model": "m", "options": {"num_ctx": -1}}"#, "options.num_ctx"),
        (r#"{"model": "m", "options": {"top_k": 3000000000}}"#, "options.top_k"),
        (r#"{"model": "m", "options": {"stop": "x"}}"#, "options.stop"),
        (r#"{"model": "m", "stream": "yes"}"#, "stream"),
        (
            r#"{"model": "m", "messages": [{"role": "robot", "content": "x"}]}"#,
            "messages[0]: unknown role",
        ),
        (
            r#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#,
            "messages[0].content",
        ),
        (
            r#"{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}]}"#,
            "messages[0].tool_calls",
        ),
    ];
    for (body, field) in cases {
        let e = chat_error(body);
        assert!(e.contains(field), "{body}: {e:?} does not name {field}");
    }
    assert_eq!(parse_body::<ChatRequest>(b"").unwrap_err(), "missing request body");
    assert!(
        parse_body::<ChatRequest>(b"{not json")
            .unwrap_err()
            .contains("line 1 column 2")
    );
    assert!(parse_body::<ChatRequest>(br#"{"model": "m"} trailing"#).is_err());

    let e = parse_body::<GenerateRequest>(br#"{"model": "m", "prompt": ["a"]}"#).unwrap_err();
    assert!(e.starts_with("prompt: "), "{e}");
    let e = parse_body::<GenerateRequest>(br#"{"model": "m", "options": {"seed": 1e400}}"#).unwrap_err();
    assert!(e.contains("number out of range"), "{e}");
    let e = parse_body::<EmbedRequest>(br#"{"model": "m"}"#).unwrap_err();
    assert!(e.contains("missing field `input`"), "{e}");

    let openai = [
        (r#"{"model": "m", "messages": [], "max_tokens": 1e30}"#, "max_tokens"),
        (
            r#"{"model": "m", "messages": [], "temperature": "warm"}"#,
            "temperature",
        ),
        (
            r#"{"model": "m", "messages": [], "logit_bias": {"1": "x"}}"#,
            "logit_bias.1",
        ),
        (
            r#"{"model": "m", "messages": [], "logit_bias": {"x": 5}}"#,
            "logit_bias: key \"x\"",
        ),
        (
            r#"{"model": "m", "messages": [], "logit_bias": {"7": 101}}"#,
            "logit_bias[7]",
        ),
        (r#"{"model": "m", "messages": [], "stop": 7}"#, "stop"),
        (r#"{"model": "m", "messages": [], "stop": ["a", 7]}"#, "stop"),
        (
            r#"{"model": "m", "messages": [], "response_format": {"type": "xml"}}"#,
            "response_format.type",
        ),
        (
            r#"{"model": "m", "messages": [], "response_format": {"type": "json_schema"}}"#,
            "response_format.json_schema.schema",
        ),
    ];
    for (body, field) in openai {
        let e = openai_error(body);
        assert!(e.contains(field), "{body}: {e:?} does not name {field}");
    }
}

#[test]
fn numbers_out_of_range_resolve_without_panicking() {
    let extreme: Options = parse_body(
        br#"{"seed": 9223372036854775807, "num_predict": -9223372036854775808, "top_k": -2147483648,
             "repeat_last_n": 2147483647, "temperature": 3.4e38, "top_p": -1e-45, "num_ctx": 4294967295,
             "num_keep": -1, "stop": ["", "\u0000"], "mirostat": {"deep": [1]}}"#,
    )
    .expect("every field in range of its type");
    let s = extreme.over(&Options::default()).resolve();
    assert_eq!(s.num_predict, None, "a negative num_predict is no limit");
    assert_eq!(s.stop, vec!["".to_string(), "\u{0}".to_string()]);
    assert_eq!(extreme.unknown_keys(), vec!["mirostat"]);
}
