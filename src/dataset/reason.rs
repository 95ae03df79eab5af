//! Why a record was dropped: a fixed code (stable, for counting and for machines) plus a sentence for people.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    MalformedJson,
    RecordTooLarge,
    UnknownFormat,
    MissingField,
    EmptyField,
    WrongRole,
    WrongOrder,
    TooShort,
    Placeholder,
    UnknownTool,
    InvalidToolArguments,
    LowQuality,
    MalformedModelOutput,
    ExactDuplicate,
    NearDuplicate,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::RecordTooLarge => "record_too_large",
            Reason::UnknownFormat => "unknown_format",
            Reason::MissingField => "missing_field",
            Reason::EmptyField => "empty_field",
            Reason::WrongRole => "wrong_role",
            Reason::WrongOrder => "wrong_order",
            Reason::TooShort => "too_short",
            Reason::Placeholder => "placeholder",
            Reason::UnknownTool => "unknown_tool",
            Reason::InvalidToolArguments => "invalid_tool_arguments",
            Reason::LowQuality => "low_quality",
            Reason::MalformedModelOutput => "malformed_model_output",
            Reason::ExactDuplicate => "exact_duplicate",
            Reason::NearDuplicate => "near_duplicate",
        }
    }

    /// Duplicates are counted apart from rejections: input = kept + rejected + duplicates.
    pub fn is_duplicate(self) -> bool {
        matches!(self, Reason::ExactDuplicate | Reason::NearDuplicate)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
    /// The raw text when the record is not JSON (up to 64 KiB; the source file and line point at the rest).
    pub raw: Option<Box<str>>,
    /// The record itself when it is JSON but not a conversation, so rejected.jsonl keeps it whole. Boxed,
    /// like `raw`: a rejection travels through every `Result` of the record path and should stay small.
    pub record: Option<Box<serde_json::Value>>,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            raw: None,
            record: None,
        }
    }

    pub fn with_record(mut self, record: serde_json::Value) -> Self {
        self.record = Some(Box::new(record));
        self
    }

    pub fn with_raw(mut self, raw: &str) -> Self {
        const KEEP: usize = 64 << 10;
        let cut = (0..=KEEP.min(raw.len()))
            .rev()
            .find(|&i| raw.is_char_boundary(i))
            .unwrap_or(0);
        self.raw = Some(raw[..cut].into());
        self
    }
}
