//! Reading records from JSON / JSONL files and folders, in the three shapes people actually have
//! (question/answer pairs, ShareGPT `conversations`, OpenAI `messages`), into [`Conversation`]s.
//!
//! A record that cannot be read is not an error of the run: it becomes an [`Item`] carrying its rejection,
//! so it is counted, reported in rejected.jsonl and never silently lost. Only an unreadable path is an error.

pub use super::convert::convert;
use super::reason::{Reason, Rejection};
use crate::api::dataset::SourceFormat;
use crate::chat::Message;
use rayon::prelude::*;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} has no .json, .jsonl or .ndjson files")]
    EmptyFolder { path: PathBuf },
}

/// Where a record came from: file and 1-based line (where its JSON starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A parsed training conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub id: Option<String>,
    pub topic: Option<String>,
    pub messages: Vec<Message>,
    /// Tools the record declares itself (OpenAI function JSON); empty means the dataset's tools apply.
    pub tools: Vec<Value>,
}

/// One input record: where it came from and what could be made of it.
#[derive(Clone, Debug)]
pub struct Item {
    pub origin: Origin,
    pub parsed: Result<Conversation, Rejection>,
}

/// How to read one source.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    pub format: SourceFormat,
    pub topic: Option<String>,
    pub max_record_bytes: usize,
}

/// Files a path stands for: the file itself, or every .json/.jsonl/.ndjson below a folder, sorted so that
/// record order (and so every tie-break downstream) does not depend on the file system.
pub fn expand(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: path.into(),
        source,
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| LoadError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| LoadError::Io {
                path: dir.clone(),
                source,
            })?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "jsonl" | "ndjson")
            ) {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        return Err(LoadError::EmptyFolder { path: path.into() });
    }
    out.sort();
    Ok(out)
}

/// Reads one file into items.
pub fn load_file(path: &Path, opts: &SourceOptions) -> Result<Vec<Item>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.into(),
        source,
    })?;
    Ok(parse_bytes(&bytes, &path.display().to_string(), opts))
}

/// Splits a file's bytes into records and converts each. `.json` files hold one record or an array of them;
/// anything else (and a `.json` that turns out to be several objects) is read as JSON Lines.
pub fn parse_bytes(bytes: &[u8], file: &str, opts: &SourceOptions) -> Vec<Item> {
    let file: Arc<str> = Arc::from(file);
    let body_start = skip_ws_bom(bytes, 0);
    let is_json_ext = file.ends_with(".json");
    // In JSON Lines every line is one record, even a line holding an array; only other files are read as
    // one JSON document (an array of records or a single object).
    let is_lines_ext = file.ends_with(".jsonl") || file.ends_with(".ndjson");
    let pieces: Vec<Piece> = match bytes.get(body_start) {
        None => Vec::new(),
        Some(b'[') if !is_lines_ext => split_array(bytes, body_start),
        Some(b'{') if is_json_ext && single_object(bytes, body_start) => {
            vec![Piece {
                start: body_start,
                end: bytes.len(),
                error: None,
            }]
        }
        Some(_) if is_json_ext && !bytes[body_start].is_ascii_graphic() => vec![Piece {
            start: body_start,
            end: bytes.len(),
            error: Some(format!(
                "not JSON: file starts with byte 0x{:02x} (binary data?)",
                bytes[body_start]
            )),
        }],
        Some(_) => split_lines(bytes),
    };
    let lines = LineIndex::new(bytes);
    pieces
        .into_par_iter()
        .map(|p| {
            let origin = Origin {
                file: file.clone(),
                line: lines.line_of(p.start),
            };
            let parsed = match p.error {
                Some(detail) => Err(Rejection::new(Reason::MalformedJson, detail)),
                None => parse_record(&bytes[p.start..p.end], opts),
            };
            Item { origin, parsed }
        })
        .collect()
}

fn parse_record(raw: &[u8], opts: &SourceOptions) -> Result<Conversation, Rejection> {
    if raw.len() > opts.max_record_bytes {
        return Err(Rejection::new(
            Reason::RecordTooLarge,
            format!(
                "record is {} bytes; the limit (filters.maxRecordBytes) is {}",
                raw.len(),
                opts.max_record_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(raw).map_err(|e| {
        Rejection::new(
            Reason::MalformedJson,
            format!("not UTF-8 text at byte {} (binary data?)", e.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let what = if e.is_eof() { "truncated JSON" } else { "invalid JSON" };
        Rejection::new(Reason::MalformedJson, format!("{what}: {e}")).with_raw(text)
    })?;
    // `convert` takes the record apart; on the (rare) failure path it is parsed again so that rejected.jsonl
    // keeps it whole, without a copy of every good record.
    convert(value, opts).map_err(|r| match serde_json::from_str(text) {
        Ok(record) => r.with_record(record),
        Err(_) => r,
    })
}

/// Byte range of one record in a file; `error` when the range could not be delimited.
struct Piece {
    start: usize,
    end: usize,
    error: Option<String>,
}

fn skip_ws_bom(b: &[u8], mut i: usize) -> usize {
    if b[i..].starts_with(&[0xEF, 0xBB, 0xBF]) {
        i += 3;
    }
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn split_lines(bytes: &[u8]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |p| start + p);
        if bytes[start..end].iter().any(|c| !c.is_ascii_whitespace()) {
            out.push(Piece {
                start,
                end,
                error: None,
            });
        }
        start = end + 1;
    }
    out
}

/// Whether the object starting at `start` is the only value in the file (else the file is JSON Lines).
fn single_object(bytes: &[u8], start: usize) -> bool {
    match scan_value(bytes, start) {
        Ok(end) => skip_ws_bom(bytes, end) >= bytes.len(),
        Err(_) => true,
    }
}

/// Delimits the elements of a top-level array without parsing them, so one bad element is one rejected
/// record and a truncated file still yields every complete record before the cut.
fn split_array(bytes: &[u8], open: usize) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut i = skip_ws_bom(bytes, open + 1);
    if bytes.get(i) == Some(&b']') {
        return out;
    }
    loop {
        if i >= bytes.len() {
            out.push(Piece {
                start: open,
                end: bytes.len(),
                error: Some("truncated JSON: the array is not closed".into()),
            });
            return out;
        }
        match scan_value(bytes, i) {
            Ok(end) => {
                out.push(Piece {
                    start: i,
                    end,
                    error: None,
                });
                let j = skip_ws_bom(bytes, end);
                match bytes.get(j) {
                    Some(b',') => i = skip_ws_bom(bytes, j + 1),
                    Some(b']') => {
                        let rest = skip_ws_bom(bytes, j + 1);
                        if rest < bytes.len() {
                            out.push(Piece {
                                start: rest,
                                end: bytes.len(),
                                error: Some("invalid JSON: unexpected data after the closing ]".into()),
                            });
                        }
                        return out;
                    }
                    None => {
                        out.push(Piece {
                            start: j.min(bytes.len()),
                            end: bytes.len(),
                            error: Some("truncated JSON: the array is not closed".into()),
                        });
                        return out;
                    }
                    Some(&c) => {
                        out.push(Piece {
                            start: j,
                            end: bytes.len(),
                            error: Some(format!("invalid JSON: expected , or ] but found {:?}", c as char)),
                        });
                        return out;
                    }
                }
            }
            Err(msg) => {
                out.push(Piece {
                    start: i,
                    end: bytes.len(),
                    error: Some(msg),
                });
                return out;
            }
        }
    }
}

/// End (exclusive) of the JSON value starting at `i`, tracking strings and nesting only.
fn scan_value(b: &[u8], i: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut j = i;
    let mut in_str = false;
    while j < b.len() {
        let c = b[j];
        if in_str {
            match c {
                b'\\' => j += 1,
                b'"' => {
                    in_str = false;
                    if depth == 0 {
                        return Ok(j + 1);
                    }
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return Ok(j);
                    }
                    depth -= 1;
                    if depth == 0 {
                        return Ok(j + 1);
                    }
                }
                b',' if depth == 0 => return Ok(j),
                c if depth == 0 && c.is_ascii_whitespace() => return Ok(j),
                _ => {}
            }
        }
        j += 1;
    }
    if depth == 0 && !in_str && j > i {
        Ok(j)
    } else {
        Err("truncated JSON: the file ends inside a record".into())
    }
}

/// Byte offset → 1-based line number.
struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(b: &[u8]) -> Self {
        LineIndex {
            newlines: memchr::memchr_iter(b'\n', b).collect(),
        }
    }
    fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&n| n < offset) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SourceOptions {
        SourceOptions {
            format: SourceFormat::Auto,
            topic: Some("t".into()),
            max_record_bytes: 1 << 20,
        }
    }

    fn reasons(items: &[Item]) -> Vec<Option<Reason>> {
        items
            .iter()
            .map(|i| i.parsed.as_ref().err().map(|r| r.reason))
            .collect()
    }

    #[test]
    fn three_formats_become_the_same_conversation() {
        let qa = r#"{"question": "What is NAT?", "answer": "Address translation."}"#;
        let sg = r#"{"conversations": [{"from": "human", "value": "What is NAT?"}, {"from": "gpt", "value": "Address translation."}]}"#;
        let oa = r#"{"messages": [{"role": "user", "content": "What is NAT?"}, {"role": "assistant", "content": "Address translation."}]}"#;
        let text = format!("{qa}\n{sg}\n\n{oa}\n");
        let items = parse_bytes(text.as_bytes(), "mixed.jsonl", &opts());
        assert_eq!(items.len(), 3);
        let convs: Vec<&Conversation> = items.iter().map(|i| i.parsed.as_ref().expect("parses")).collect();
        assert_eq!(convs[0].messages, convs[1].messages);
        assert_eq!(convs[1].messages, convs[2].messages);
        assert_eq!(items.iter().map(|i| i.origin.line).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(convs[0].topic.as_deref(), Some("t"));
    }

    #[test]
    fn openai_tool_calls_and_results_keep_names_and_decode_arguments() {
        let rec = r#"{"messages": [{"role": "user", "content": "check it"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c9", "type": "function",
              "function": {"name": "check_traffic_flow", "arguments": "{\"port\": 443}"}}]},
            {"role": "tool", "tool_call_id": "c9", "content": "{\"verdict\": \"allowed\"}"},
            {"role": "assistant", "content": "Allowed."}]}"#;
        let items = parse_bytes(rec.replace('\n', " ").as_bytes(), "x.jsonl", &opts());
        let c = items[0].parsed.as_ref().expect("parses");
        assert_eq!(c.messages[1].tool_calls[0].arguments, serde_json::json!({"port": 443}));
        assert_eq!(c.messages[2].tool_name.as_deref(), Some("check_traffic_flow"));
    }

    #[test]
    fn json_arrays_give_each_element_its_line() {
        let text = "[\n  {\"question\": \"q1 is here\", \"answer\": \"a\"},\n  {\"question\": \"q2\",\n   \"answer\": \"b\"}\n]\n";
        let items = parse_bytes(text.as_bytes(), "a.json", &opts());
        assert_eq!(items.iter().map(|i| i.origin.line).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(reasons(&items), vec![None, None]);
    }

    #[test]
    fn a_truncated_array_keeps_the_complete_records_and_rejects_the_rest() {
        let text = "[{\"question\": \"q1\", \"answer\": \"a\"}, {\"question\": \"q2\", \"ans";
        let items = parse_bytes(text.as_bytes(), "a.json", &opts());
        assert_eq!(reasons(&items), vec![None, Some(Reason::MalformedJson)]);
        let detail = &items[1].parsed.as_ref().expect_err("truncated").detail;
        assert!(detail.contains("truncated"), "{detail}");
    }

    #[test]
    fn garbage_and_structural_problems_have_reasons() {
        let items = parse_bytes(&[0xff, 0xfe, 0x00, 0x13, b'\n', b'{', b'x'], "g.jsonl", &opts());
        assert_eq!(
            reasons(&items),
            vec![Some(Reason::MalformedJson), Some(Reason::MalformedJson)]
        );
        let items = parse_bytes(&[0x00, 0x01, 0x02, 0x03], "g.json", &opts());
        assert_eq!(reasons(&items), vec![Some(Reason::MalformedJson)]);
        let lines = [
            (r#"[1, 2]"#, Reason::UnknownFormat),
            (r#"{"text": "hello"}"#, Reason::UnknownFormat),
            (r#"{"question": "only a question"}"#, Reason::MissingField),
            (r#"{"question": 5, "answer": "x"}"#, Reason::MissingField),
            (
                r#"{"conversations": [{"from": "customer", "value": "hi"}]}"#,
                Reason::WrongRole,
            ),
            (r#"{"messages": [{"role": "bot", "content": "hi"}]}"#, Reason::WrongRole),
            (r#"{"conversations": "not a list"}"#, Reason::MissingField),
        ];
        for (line, want) in lines {
            let items = parse_bytes(line.as_bytes(), "x.jsonl", &opts());
            assert_eq!(reasons(&items), vec![Some(want)], "{line}");
        }
    }

    #[test]
    fn an_oversized_record_is_rejected_unparsed() {
        let mut o = opts();
        o.max_record_bytes = 64;
        let line = format!("{{\"question\": \"{}\", \"answer\": \"a\"}}", "x".repeat(100));
        let items = parse_bytes(line.as_bytes(), "big.jsonl", &o);
        assert_eq!(reasons(&items), vec![Some(Reason::RecordTooLarge)]);
    }
}
