//! Training examples: dataset JSONL (ShareGPT or OpenAI messages) → conversations → token ids with
//! assistant-only labels.
//!
//! Labels come from the rendered text, not from guessing token patterns: for each assistant turn i we render
//! the conversation up to turn i with the generation prompt (where the assistant's tokens begin) and up to
//! and including turn i (where they end). Every token starting inside such a span carries loss — the
//! assistant's content, its tool-call JSON and its end-of-turn token — and nothing else does: system, user
//! and tool-result turns, headers and the generation prompt are masked.

use crate::chat::{ChatTemplate, Message, Role, TemplateError, ToolCall};
use serde_json::Value;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub const IGNORE: i64 = -100;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Record {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("example {index}: {source}")]
    Render { index: usize, source: TemplateError },
    #[error(
        "example {index}: the chat template is not prefix-stable at turn {turn}, so assistant tokens cannot be located"
    )]
    PrefixUnstable { index: usize, turn: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// One conversation and the tools declared for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    pub tools: Vec<Value>,
}

/// Parses one JSONL record: `{"conversations":[{"from","value",...}]}` or `{"messages":[{"role","content",...}]}`.
pub fn parse_record(value: &Value) -> Result<Conversation, String> {
    let tools = match value.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(normalize_tool).collect(),
        Some(_) => return Err("\"tools\" must be an array".into()),
    };
    let (turns, role_key, text_key) = if let Some(c) = value.get("conversations") {
        (c, "from", "value")
    } else if let Some(m) = value.get("messages") {
        (m, "role", "content")
    } else {
        return Err("expected \"conversations\" (ShareGPT) or \"messages\" (OpenAI)".into());
    };
    let turns = turns.as_array().ok_or("conversation must be an array")?;
    let mut messages = Vec::with_capacity(turns.len());
    for (i, turn) in turns.iter().enumerate() {
        let role_name = turn[role_key]
            .as_str()
            .ok_or_else(|| format!("turn {i}: missing \"{role_key}\""))?;
        let role = match role_name {
            "system" => Role::System,
            "human" | "user" => Role::User,
            "gpt" | "assistant" => Role::Assistant,
            "tool" | "ipython" | "function_response" | "observation" => Role::Tool,
            other => return Err(format!("turn {i}: unknown role {other:?}")),
        };
        let content = match &turn[text_key] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => return Err(format!("turn {i}: \"{text_key}\" must be a string, got {other}")),
        };
        let mut msg = Message::new(role, content);
        if let Some(calls) = turn.get("tool_calls").and_then(Value::as_array) {
            for (j, call) in calls.iter().enumerate() {
                // OpenAI nests under "function"; ShareGPT (our dataset artifact) is flat.
                let f = call.get("function").unwrap_or(call);
                let name = f["name"]
                    .as_str()
                    .ok_or_else(|| format!("turn {i}: tool call {j}: missing name"))?;
                let arguments = match &f["arguments"] {
                    // OpenAI sends a JSON string; decode it or the template would double-encode it.
                    Value::String(s) => serde_json::from_str(s)
                        .map_err(|e| format!("turn {i}: tool call {j}: arguments are not JSON: {e}"))?,
                    Value::Null => Value::Object(Default::default()),
                    v => v.clone(),
                };
                msg.tool_calls.push(ToolCall {
                    name: name.to_owned(),
                    arguments,
                });
            }
        }
        if role == Role::Tool {
            msg.tool_name = turn["name"].as_str().map(str::to_owned);
        }
        messages.push(msg);
    }
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err("no assistant turn: nothing to train on".into());
    }
    Ok(Conversation { messages, tools })
}

/// Tools may be declared bare (`{"name","parameters"}`) or OpenAI-wrapped; templates expect the wrapper.
fn normalize_tool(tool: &Value) -> Value {
    if tool.get("function").is_some() {
        tool.clone()
    } else {
        serde_json::json!({"type": "function", "function": tool})
    }
}

pub fn read_jsonl(path: &Path) -> Result<Vec<Conversation>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = |message: String| DataError::Record {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let value: Value = serde_json::from_str(line).map_err(|e| record(e.to_string()))?;
        out.push(parse_record(&value).map_err(record)?);
    }
    Ok(out)
}

/// The rendered conversation and the byte ranges of each assistant turn (content through end-of-turn token).
pub fn assistant_spans(
    template: &ChatTemplate,
    conv: &Conversation,
    index: usize,
) -> Result<(String, Vec<Range<usize>>), DataError> {
    let render = |msgs: &[Message], prompt: bool| {
        template
            .render(msgs, &conv.tools, prompt)
            .map_err(|source| DataError::Render { index, source })
    };
    let full = render(&conv.messages, false)?;
    let mut spans = Vec::new();
    for (turn, m) in conv.messages.iter().enumerate() {
        if m.role != Role::Assistant {
            continue;
        }
        let before = render(&conv.messages[..turn], true)?;
        let through = render(&conv.messages[..=turn], false)?;
        if !full.starts_with(&before) || !full.starts_with(&through) || through.len() < before.len() {
            return Err(DataError::PrefixUnstable { index, turn });
        }
        // Templates put a newline after the end-of-turn token (ChatML); that separator is not the answer.
        let end = before.len() + through[before.len()..].trim_end().len();
        spans.push(before.len()..end);
    }
    Ok((full, spans))
}

/// Token ids, labels (unshifted; −100 where no loss) and the token index where each assistant turn ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Labeled {
    pub ids: Vec<i64>,
    pub labels: Vec<i64>,
    pub turn_ends: Vec<usize>,
}

/// Labels from token byte offsets: a token carries loss when it starts inside an assistant span.
pub fn label_tokens(ids: &[u32], offsets: &[(usize, usize)], spans: &[Range<usize>]) -> Labeled {
    let mut labels = vec![IGNORE; ids.len()];
    let mut turn_ends = vec![0; spans.len()];
    for (t, (&id, &(start, _))) in ids.iter().zip(offsets).enumerate() {
        if let Some(s) = spans.iter().position(|r| r.contains(&start)) {
            labels[t] = id as i64;
            turn_ends[s] = t + 1;
        }
    }
    Labeled {
        ids: ids.iter().map(|&i| i as i64).collect(),
        labels,
        turn_ends,
    }
}

/// What truncation did to one example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    None,
    /// Whole trailing assistant turns (and everything after the last kept one) were dropped.
    Turns(usize),
    /// Even the first assistant turn did not fit: cut inside it.
    Hard,
}

/// Fits an example into `max_len` tokens by dropping trailing turns; cuts mid-turn only when the first
/// assistant turn alone is too long.
pub fn truncate(mut ex: Labeled, max_len: usize) -> (Labeled, Truncation) {
    if ex.ids.len() <= max_len {
        return (ex, Truncation::None);
    }
    let kept = ex.turn_ends.iter().filter(|&&e| e <= max_len).count();
    let (cut, how) = if kept > 0 {
        (ex.turn_ends[kept - 1], Truncation::Turns(ex.turn_ends.len() - kept))
    } else {
        (max_len, Truncation::Hard)
    };
    ex.ids.truncate(cut);
    ex.labels.truncate(cut);
    ex.turn_ends.truncate(kept.max(1));
    (ex, how)
}

/// Model inputs for one example: ids and targets shifted by one (targets[t] = label of token t+1).
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub ids: Vec<i64>,
    pub targets: Vec<i64>,
}

impl Example {
    pub fn from_labeled(ex: &Labeled) -> Self {
        let mut targets: Vec<i64> = ex.labels.iter().skip(1).copied().collect();
        targets.push(IGNORE);
        Example {
            ids: ex.ids.clone(),
            targets,
        }
    }

    /// From token ids and unshifted labels (−100 where no loss).
    pub fn from_labels(ids: Vec<i64>, labels: Vec<i64>) -> Self {
        Self::from_labeled(&Labeled {
            ids,
            labels,
            turn_ends: Vec::new(),
        })
    }

    /// The unshifted labels again (label[t] is the target of position t−1), as transformers takes them.
    pub fn labels(&self) -> Vec<i64> {
        std::iter::once(IGNORE)
            .chain(self.targets.iter().take(self.targets.len().saturating_sub(1)).copied())
            .collect()
    }

    pub fn trained_tokens(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// Counts reported after encoding a dataset.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncodeStats {
    pub examples: usize,
    pub truncated_examples: usize,
    pub dropped_turns: usize,
    pub hard_truncated: usize,
    pub skipped_no_labels: usize,
    pub tokens: usize,
    pub trained_tokens: usize,
}

pub struct Encoder<'a> {
    pub template: &'a ChatTemplate,
    pub tokenizer: &'a tokenizers::Tokenizer,
    pub max_len: usize,
    /// Given to conversations that have no system turn, as the servers give the Modelfile's system prompt to
    /// requests without one: the model trains on what it will be served. Empty: none.
    pub system: &'a str,
}

/// The conversation as a server would render it: its own system turn, or `system` first when it has none.
pub fn with_system<'a>(conv: &'a Conversation, system: &str) -> std::borrow::Cow<'a, Conversation> {
    if system.is_empty() || conv.messages.first().is_some_and(|m| m.role == Role::System) {
        return std::borrow::Cow::Borrowed(conv);
    }
    let mut messages = Vec::with_capacity(conv.messages.len() + 1);
    messages.push(Message::system(system));
    messages.extend(conv.messages.iter().cloned());
    std::borrow::Cow::Owned(Conversation {
        messages,
        tools: conv.tools.clone(),
    })
}

impl Encoder<'_> {
    /// Renders and tokenizes one conversation (the template already writes BOS, so no special tokens are added).
    pub fn label(&self, conv: &Conversation, index: usize) -> Result<Labeled, DataError> {
        let conv = with_system(conv, self.system);
        let (text, spans) = assistant_spans(self.template, &conv, index)?;
        let enc = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| DataError::Tokenizer(format!("example {index}: {e}")))?;
        Ok(label_tokens(enc.get_ids(), enc.get_offsets(), &spans))
    }

    pub fn encode_all(&self, convs: &[Conversation]) -> Result<(Vec<Example>, EncodeStats), DataError> {
        let mut stats = EncodeStats::default();
        let mut out = Vec::with_capacity(convs.len());
        for (i, conv) in convs.iter().enumerate() {
            let (ex, how) = truncate(self.label(conv, i)?, self.max_len);
            match how {
                Truncation::None => {}
                Truncation::Turns(n) => {
                    stats.truncated_examples += 1;
                    stats.dropped_turns += n;
                }
                Truncation::Hard => {
                    stats.truncated_examples += 1;
                    stats.hard_truncated += 1;
                }
            }
            let ex = Example::from_labeled(&ex);
            if ex.trained_tokens() == 0 {
                stats.skipped_no_labels += 1;
                continue;
            }
            stats.examples += 1;
            stats.tokens += ex.ids.len();
            stats.trained_tokens += ex.trained_tokens();
            out.push(ex);
        }
        Ok((out, stats))
    }
}

/// SplitMix64: a tiny seeded generator whose whole state is one u64, so a checkpoint can store it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The micro-batches of one epoch, as example indices. Length bucketing: shuffle, sort windows of
/// 32 batches by length so a batch pads little, then shuffle the batches. A pure function of
/// (lengths, seed, epoch), so a resumed run sees exactly the batches the interrupted one would have.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64(seed ^ (epoch as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let window = batch_size.max(1) * 32;
    let mut batches = Vec::new();
    for chunk in order.chunks_mut(window) {
        chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(chunk.chunks(batch_size.max(1)).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

/// Right-pads a batch into [batch, seq] ids and targets (pad id 0 with target −100: never trained on).
pub fn collate(examples: &[&Example]) -> (Vec<i64>, Vec<i64>, i64, i64) {
    let seq = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(examples.len() * seq);
    let mut targets = Vec::with_capacity(examples.len() * seq);
    for e in examples {
        ids.extend_from_slice(&e.ids);
        ids.extend(std::iter::repeat_n(0, seq - e.ids.len()));
        targets.extend_from_slice(&e.targets);
        targets.extend(std::iter::repeat_n(IGNORE, seq - e.targets.len()));
    }
    (ids, targets, examples.len() as i64, seq as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_string_arguments_are_decoded() {
        let v: Value = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,
            "tool_calls":[{"type":"function","function":{"name":"f","arguments":"{\"port\":443}"}}]},
            {"role":"tool","name":"f","content":"ok"},{"role":"assistant","content":"done"}]}"#,
        )
        .unwrap();
        let c = parse_record(&v).unwrap();
        assert_eq!(c.messages[1].tool_calls[0].arguments, serde_json::json!({"port": 443}));
        assert_eq!(c.messages[2].role, Role::Tool);
        assert_eq!(c.messages[2].tool_name.as_deref(), Some("f"));
    }

    #[test]
    fn sharegpt_without_assistant_is_rejected() {
        let v = serde_json::json!({"conversations":[{"from":"human","value":"hi"}]});
        assert!(parse_record(&v).unwrap_err().contains("no assistant turn"));
        let v = serde_json::json!({"conversations":[{"from":"robot","value":"hi"}]});
        assert!(parse_record(&v).unwrap_err().contains("unknown role"));
    }

    #[test]
    // One character span, not a list of the numbers 3 to 8.
    #[allow(clippy::single_range_in_vec_init)]
    fn labels_follow_token_starts() {
        // Tokens: [0,3) [3,5) [5,9) [9,10); span [3,9) covers tokens 1 and 2.
        let l = label_tokens(&[7, 8, 9, 10], &[(0, 3), (3, 5), (5, 9), (9, 10)], &[3..9]);
        assert_eq!(l.labels, vec![IGNORE, 8, 9, IGNORE]);
        assert_eq!(l.turn_ends, vec![3]);
    }

    #[test]
    fn truncation_drops_whole_turns_then_cuts() {
        let ex = Labeled {
            ids: (0..10).collect(),
            labels: vec![IGNORE, IGNORE, 2, 3, IGNORE, IGNORE, 6, 7, IGNORE, 9],
            turn_ends: vec![4, 8, 10],
        };
        let (t, how) = truncate(ex.clone(), 9);
        assert_eq!(how, Truncation::Turns(1));
        assert_eq!(t.ids.len(), 8);
        let (t, how) = truncate(ex.clone(), 3);
        assert_eq!(how, Truncation::Hard);
        assert_eq!(t.labels, vec![IGNORE, IGNORE, 2]);
        assert_eq!(truncate(ex, 10).1, Truncation::None);
    }

    #[test]
    fn shifted_targets_and_padding() {
        let e = Example::from_labeled(&Labeled {
            ids: vec![1, 2, 3],
            labels: vec![IGNORE, 2, 3],
            turn_ends: vec![3],
        });
        assert_eq!(e.targets, vec![2, 3, IGNORE]);
        let short = Example {
            ids: vec![5],
            targets: vec![IGNORE],
        };
        let (ids, targets, b, s) = collate(&[&e, &short]);
        assert_eq!((b, s), (2, 3));
        assert_eq!(ids, vec![1, 2, 3, 5, 0, 0]);
        assert_eq!(targets, vec![2, 3, IGNORE, IGNORE, IGNORE, IGNORE]);
    }

    #[test]
    fn bucketing_is_a_permutation_and_deterministic() {
        let lengths: Vec<usize> = (0..100).map(|i| (i * 37) % 91).collect();
        let a = epoch_batches(&lengths, 2, 3407, 0);
        assert_eq!(a, epoch_batches(&lengths, 2, 3407, 0));
        assert_ne!(a, epoch_batches(&lengths, 2, 3407, 1));
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}
