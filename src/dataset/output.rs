//! Writing the artifact: ShareGPT train/eval JSONL (what the trainer reads), optional OpenAI-messages JSONL,
//! rejected.jsonl (every dropped record with its reason), stats.json and a score histogram SVG — into a
//! temporary folder that is renamed to the sha256 of its content once everything is on disk.

use super::curate::{Fate, Outcome, Stats};
use super::load::{Conversation, Item};
use super::score::Score;
use crate::artifact;
use crate::chat::{Message, Role};
use rayon::prelude::*;
use serde_json::{Map, Value, json};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Artifact(#[from] artifact::IoError),
    #[error(
        "count invariant broken while writing: input {input} records but wrote {train} train + {eval} eval + {rejected} rejected lines"
    )]
    Lost {
        input: usize,
        train: usize,
        eval: usize,
        rejected: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.into(),
        source,
    }
}

/// The written artifact.
#[derive(Clone, Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub digest: crate::contract::Digest,
}

/// A conversation's turns in ShareGPT form, borrowed: train/eval lines and rejected records share this shape.
fn sharegpt_turns(messages: &[Message]) -> Vec<ShareGptTurn<'_>> {
    messages
        .iter()
        .map(|m| ShareGptTurn {
            from: sharegpt_from(m.role),
            value: &m.content,
            tool_calls: &m.tool_calls,
            name: m.tool_name.as_deref(),
        })
        .collect()
}

fn sharegpt_from(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "human",
        Role::Assistant => "gpt",
        Role::Tool => "tool",
    }
}

fn uses_tools(c: &Conversation) -> bool {
    c.messages
        .iter()
        .any(|m| !m.tool_calls.is_empty() || m.role == Role::Tool)
}

/// One train/eval line, borrowed from its record: serializing this instead of a cloned `Value` tree skips a
/// copy of every string. The field order is the line's key order. Tools are attached only to conversations
/// that use them, so the trainer renders plain Q&A without a tool preamble.
#[derive(serde::Serialize)]
struct ShareGptLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(serialize_with = "display")]
    source: &'a super::load::Origin,
    conversations: Vec<ShareGptTurn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [Value]>,
}

#[derive(serde::Serialize)]
struct ShareGptTurn<'a> {
    from: &'static str,
    value: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tool_calls: &'a [crate::chat::ToolCall],
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl<'a> ShareGptLine<'a> {
    fn new(item: &'a Item, c: &'a Conversation, default_tools: &'a [Value]) -> Self {
        ShareGptLine {
            id: c.id.as_deref(),
            topic: c.topic.as_deref(),
            source: &item.origin,
            conversations: sharegpt_turns(&c.messages),
            tools: uses_tools(c).then_some(if c.tools.is_empty() { default_tools } else { &c.tools }),
        }
    }
}

pub fn openai_line(c: &Conversation, default_tools: &[Value]) -> Value {
    let mut messages = Vec::with_capacity(c.messages.len());
    let mut ids: Vec<String> = Vec::new();
    let mut next_result = 0;
    for m in &c.messages {
        let mut o = Map::new();
        o.insert("role".into(), m.role.as_str().into());
        o.insert("content".into(), m.content.clone().into());
        if !m.tool_calls.is_empty() {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|call| {
                    let id = format!("call_{}", ids.len());
                    ids.push(id.clone());
                    json!({"id": id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments.to_string()}})
                })
                .collect();
            o.insert("tool_calls".into(), calls.into());
        }
        if m.role == Role::Tool {
            if let Some(id) = ids.get(next_result) {
                o.insert("tool_call_id".into(), id.clone().into());
            }
            next_result += 1;
            if let Some(n) = &m.tool_name {
                o.insert("name".into(), n.clone().into());
            }
        }
        messages.push(Value::Object(o));
    }
    let mut line = json!({ "messages": messages });
    if uses_tools(c) {
        line["tools"] = (if c.tools.is_empty() { default_tools } else { &c.tools })
            .to_vec()
            .into();
    }
    line
}

fn rejected_line(items: &[Item], i: usize, fate: &Fate, score: Option<&Score>) -> Value {
    let item = &items[i];
    let mut o = Map::new();
    o.insert("source".into(), item.origin.to_string().into());
    match fate {
        Fate::Rejected(r) => {
            o.insert("reason".into(), r.reason.as_str().into());
            o.insert("detail".into(), r.detail.clone().into());
            if let Some(raw) = &r.raw {
                o.insert("raw".into(), raw.to_string().into());
            }
            if let Some(record) = &r.record {
                for key in ["id", "topic"] {
                    if let Some(v) = record.get(key) {
                        o.insert(key.into(), v.clone());
                    }
                }
                o.insert("record".into(), (**record).clone());
            }
        }
        Fate::Duplicate {
            reason,
            keep,
            cluster,
            similarity_pct,
        } => {
            o.insert("reason".into(), reason.as_str().into());
            o.insert(
                "detail".into(),
                format!("{}% similar to the kept record {}", similarity_pct, items[*keep].origin).into(),
            );
            o.insert("cluster".into(), format!("cluster-{cluster}").into());
            o.insert("keptSource".into(), items[*keep].origin.to_string().into());
            o.insert("similarity".into(), (*similarity_pct as f64 / 100.0).into());
        }
        Fate::Train | Fate::Eval => {}
    }
    if let Some(s) = score {
        o.insert("score".into(), s.total.into());
        o.insert("scoreComponents".into(), serde_json::to_value(s).unwrap_or(Value::Null));
    }
    if let Ok(c) = &item.parsed {
        if let Some(id) = &c.id {
            o.insert("id".into(), id.clone().into());
        }
        if let Some(t) = &c.topic {
            o.insert("topic".into(), t.clone().into());
        }
        o.insert(
            "conversations".into(),
            serde_json::to_value(sharegpt_turns(&c.messages)).unwrap_or(Value::Null),
        );
    }
    Value::Object(o)
}

/// Serialized JSON lines and how many.
#[derive(Default)]
struct Buf {
    bytes: Vec<u8>,
    count: usize,
}

impl Buf {
    fn push(&mut self, v: &impl serde::Serialize) {
        // Serializing these lines into memory cannot fail: every map key is a string.
        let _ = serde_json::to_writer(&mut self.bytes, v);
        self.bytes.push(b'\n');
        self.count += 1;
    }
}

/// The lines a range of records contributes to each output file.
#[derive(Default)]
struct Lines {
    train: Buf,
    eval: Buf,
    rejected: Buf,
    otrain: Buf,
    oeval: Buf,
}

fn lines(
    items: &[Item],
    outcome: &Outcome,
    default_tools: &[Value],
    openai: bool,
    range: std::ops::Range<usize>,
) -> Lines {
    let mut l = Lines::default();
    for i in range {
        let fate = &outcome.fates[i];
        match (fate, items[i].parsed.as_ref().ok()) {
            (Fate::Train, Some(c)) => {
                l.train.push(&ShareGptLine::new(&items[i], c, default_tools));
                if openai {
                    l.otrain.push(&openai_line(c, default_tools));
                }
            }
            (Fate::Eval, Some(c)) => {
                l.eval.push(&ShareGptLine::new(&items[i], c, default_tools));
                if openai {
                    l.oeval.push(&openai_line(c, default_tools));
                }
            }
            (Fate::Train | Fate::Eval, None) => {}
            (f, _) => l.rejected.push(&rejected_line(items, i, f, outcome.scores[i].as_ref())),
        }
    }
    l
}

struct Jsonl {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    lines: usize,
}

impl Jsonl {
    fn create(path: PathBuf) -> Result<Self, OutputError> {
        let f = std::fs::File::create(&path).map_err(io(&path))?;
        Ok(Jsonl {
            out: BufWriter::with_capacity(1 << 20, f),
            path,
            lines: 0,
        })
    }
    fn push_lines(&mut self, lines: &Buf) -> Result<(), OutputError> {
        self.out.write_all(&lines.bytes).map_err(io(&self.path))?;
        self.lines += lines.count;
        Ok(())
    }
    fn finish(self) -> Result<usize, OutputError> {
        let f = self.out.into_inner().map_err(|e| OutputError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io(&self.path))?;
        Ok(self.lines)
    }
}

/// Writes the artifact under `parent/<hex digest>/` (through a temporary folder, so a partial build never
/// looks complete) and returns it. An identical earlier artifact is reused.
pub fn write(
    parent: &Path,
    items: &[Item],
    outcome: &Outcome,
    default_tools: &[Value],
    openai: bool,
) -> Result<Written, OutputError> {
    let tmp = artifact::staging(&parent.join(format!("build-{}", nanos())))?;
    let result = write_into(&tmp, items, outcome, default_tools, openai)
        .and_then(|()| Ok(artifact::publish_content_addressed(&tmp, parent)?))
        .map(|(dir, digest)| Written { dir, digest });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn write_into(
    dir: &Path,
    items: &[Item],
    outcome: &Outcome,
    default_tools: &[Value],
    openai: bool,
) -> Result<(), OutputError> {
    let mut train = Jsonl::create(dir.join("train.jsonl"))?;
    let mut eval = Jsonl::create(dir.join("eval.jsonl"))?;
    let mut rejected = Jsonl::create(dir.join("rejected.jsonl"))?;
    let (mut otrain, mut oeval) = if openai {
        (
            Some(Jsonl::create(dir.join("train.openai.jsonl"))?),
            Some(Jsonl::create(dir.join("eval.openai.jsonl"))?),
        )
    } else {
        (None, None)
    };
    // Lines are serialized in parallel, a batch of records at a time, and written in input order: the same
    // bytes as a sequential write (the serial loop was a third of the run), memory bounded by one batch.
    const BATCH: usize = 16_384;
    const PIECE: usize = 256;
    let n = outcome.fates.len();
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let pieces: Vec<(usize, usize)> = (start..end).step_by(PIECE).map(|a| (a, (a + PIECE).min(end))).collect();
        let parts: Vec<Lines> = pieces
            .par_iter()
            .map(|&(a, b)| lines(items, outcome, default_tools, openai, a..b))
            .collect();
        for part in parts {
            train.push_lines(&part.train)?;
            eval.push_lines(&part.eval)?;
            rejected.push_lines(&part.rejected)?;
            if let Some(o) = otrain.as_mut() {
                o.push_lines(&part.otrain)?;
            }
            if let Some(o) = oeval.as_mut() {
                o.push_lines(&part.oeval)?;
            }
        }
    }
    let (t, e, r) = (train.finish()?, eval.finish()?, rejected.finish()?);
    for o in [otrain, oeval].into_iter().flatten() {
        o.finish()?;
    }
    if t + e + r != items.len() || t != outcome.stats.train || e != outcome.stats.eval {
        return Err(OutputError::Lost {
            input: items.len(),
            train: t,
            eval: e,
            rejected: r,
        });
    }
    let stats_path = dir.join("stats.json");
    let mut text = serde_json::to_string_pretty(&outcome.stats).unwrap_or_default();
    text.push('\n');
    std::fs::write(&stats_path, text).map_err(io(&stats_path))?;
    let svg_path = dir.join("score-histogram.svg");
    std::fs::write(&svg_path, histogram_svg(&outcome.stats)).map_err(io(&svg_path))?;
    Ok(())
}

/// Bar chart of the score histogram with the threshold marked.
pub fn histogram_svg(stats: &Stats) -> String {
    let (w, h, left, bottom, top) = (640.0, 320.0, 50.0, 40.0, 30.0);
    let max = stats.score_histogram.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let n = stats.score_histogram.len().max(1) as f64;
    let bw = (w - left - 20.0) / n;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"18\" font-size=\"13\">Quality scores of {} valid records (threshold {})</text>\n",
        stats.valid, stats.min_quality_score
    );
    for (k, b) in stats.score_histogram.iter().enumerate() {
        let bh = (h - bottom - top) * b.count as f64 / max;
        let x = left + k as f64 * bw;
        let y = h - bottom - bh;
        let pass = k as u8 * 10 >= stats.min_quality_score;
        let fill = if pass { "#2f7d4f" } else { "#b0b0b0" };
        s.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x + 2.0,
            bw - 4.0,
            x + bw / 2.0,
            y - 4.0,
            b.count,
            x + bw / 2.0,
            h - bottom + 16.0,
            b.bucket
        ));
    }
    let tx = left + (stats.min_quality_score as f64 / 10.0) * bw;
    s.push_str(&format!(
        "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\n</svg>\n",
        h - bottom
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ToolCall;
    use crate::dataset::load::Origin;

    fn message(role: Role, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_name: None,
        }
    }

    /// The trainer's input format, byte for byte: key order, omitted empty fields, tools only where used.
    #[test]
    fn sharegpt_lines_have_a_fixed_shape() {
        let mut call = message(Role::Assistant, "");
        call.tool_calls.push(ToolCall {
            name: "check_traffic_flow".into(),
            arguments: json!({"src": "10.0.0.1", "port": 443}),
        });
        let mut result = message(Role::Tool, "{\"allowed\":true}");
        result.tool_name = Some("check_traffic_flow".into());
        let c = Conversation {
            id: Some("q-1".into()),
            topic: Some("api".into()),
            messages: vec![
                message(Role::User, "Is \"443\" open?"),
                call,
                result,
                message(Role::Assistant, "Yes."),
            ],
            tools: Vec::new(),
        };
        let item = Item {
            origin: Origin {
                file: "in/a.jsonl".into(),
                line: 7,
            },
            parsed: Ok(c.clone()),
        };
        let tools = [json!({"type": "function", "function": {"name": "check_traffic_flow"}})];
        let mut buf = Buf::default();
        buf.push(&ShareGptLine::new(&item, &c, &tools));
        assert_eq!(
            String::from_utf8(buf.bytes).unwrap(),
            concat!(
                r#"{"id":"q-1","topic":"api","source":"in/a.jsonl:7","conversations":["#,
                r#"{"from":"human","value":"Is \"443\" open?"},"#,
                r#"{"from":"gpt","value":"","tool_calls":[{"name":"check_traffic_flow","arguments":{"src":"10.0.0.1","port":443}}]},"#,
                r#"{"from":"tool","value":"{\"allowed\":true}","name":"check_traffic_flow"},"#,
                r#"{"from":"gpt","value":"Yes."}],"#,
                r#""tools":[{"type":"function","function":{"name":"check_traffic_flow"}}]}"#,
                "\n"
            )
        );
        // Plain Q&A: no id, topic or tools keys at all.
        let plain = Conversation {
            id: None,
            topic: None,
            messages: vec![message(Role::User, "hi"), message(Role::Assistant, "hello")],
            tools: Vec::new(),
        };
        let line = serde_json::to_string(&ShareGptLine::new(&item, &plain, &tools)).unwrap();
        assert_eq!(
            line,
            r#"{"source":"in/a.jsonl:7","conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"hello"}]}"#
        );
    }
}
