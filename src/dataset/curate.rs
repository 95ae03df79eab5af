//! The decisions: every input item gets exactly one fate (kept in train or eval, rejected with a reason, or a
//! duplicate of a kept record), and the counts are checked to add up. Pure: no I/O here.

use super::dedup::{self, Fingerprint, Verdict};
use super::load::{Conversation, Item};
use super::reason::{Reason, Rejection};
use super::score::{self, Score};
use super::validate::{self, Rules};
use crate::chat::Role;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Config {
    pub rules: Rules,
    pub min_score: u8,
    pub exact: bool,
    pub near: f64,
    pub eval_fraction: f64,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Fate {
    Train,
    Eval,
    Rejected(Rejection),
    /// A duplicate of item `keep`, in cluster `cluster`.
    Duplicate {
        reason: Reason,
        keep: usize,
        cluster: usize,
        similarity_pct: u8,
    },
}

#[derive(Debug, thiserror::Error)]
#[error(
    "count invariant broken: input {input} != kept {kept} + rejected {rejected} + duplicates {duplicates}; refusing to write an artifact that lost records"
)]
pub struct InvariantError {
    pub input: usize,
    pub kept: usize,
    pub rejected: usize,
    pub duplicates: usize,
}

pub struct Outcome {
    pub fates: Vec<Fate>,
    pub scores: Vec<Option<Score>>,
    /// Cluster id of kept records that represent a duplicate cluster.
    pub clusters: Vec<Option<usize>>,
    pub stats: Stats,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub input: usize,
    pub valid: usize,
    pub rejected: usize,
    pub duplicates: usize,
    pub kept: usize,
    pub train: usize,
    pub eval: usize,
    pub score_histogram: Vec<Bucket>,
    pub topics: Vec<TopicStats>,
    pub reasons: BTreeMap<&'static str, usize>,
    pub clusters: usize,
    pub min_quality_score: u8,
    /// Mean points per score component over valid records.
    pub mean_score_components: BTreeMap<&'static str, f32>,
}

impl Stats {
    /// The counts a Dataset's status shows (stats.json keeps everything).
    pub fn status_counts(&self) -> crate::api::dataset::DatasetStats {
        use crate::api::dataset::{DatasetStats, ScoreBucket, TopicStats as StatusTopic};
        DatasetStats {
            input: self.input as u64,
            valid: self.valid as u64,
            rejected: self.rejected as u64,
            duplicates: self.duplicates as u64,
            kept: self.kept as u64,
            train: self.train as u64,
            eval: self.eval as u64,
            score_histogram: self
                .score_histogram
                .iter()
                .map(|b| ScoreBucket {
                    bucket: b.bucket.clone(),
                    count: b.count as u64,
                })
                .collect(),
            topics: self
                .topics
                .iter()
                .map(|t| StatusTopic {
                    name: t.name.clone(),
                    passed: t.passed as u64,
                    total: t.total as u64,
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Bucket {
    pub bucket: String,
    pub count: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopicStats {
    pub name: String,
    pub passed: usize,
    pub total: usize,
}

/// The text dedup compares: every turn but the system prompt, tool calls included.
pub fn dedup_text(c: &Conversation) -> String {
    let mut t = String::new();
    for m in c.messages.iter().filter(|m| m.role != Role::System) {
        t.push_str(&m.content);
        t.push('\n');
        for call in &m.tool_calls {
            t.push_str(&call.name);
            t.push(' ');
            t.push_str(&call.arguments.to_string());
            t.push('\n');
        }
    }
    t
}

pub fn curate(items: &[Item], cfg: &Config) -> Result<Outcome, InvariantError> {
    let n = items.len();
    // Validate and score in parallel; fingerprint only what passed, since only those can be kept. The split
    // key comes from the same conversation text, built once here.
    let staged: Vec<(Result<Score, Rejection>, Option<Fingerprint>, u64)> = items
        .par_iter()
        .map(|item| {
            let conv = match &item.parsed {
                Ok(c) => c,
                Err(r) => return (Err(r.clone()), None, 0),
            };
            if let Err(r) = validate::validate(conv, &cfg.rules) {
                return (Err(r), None, 0);
            }
            let s = score::score(conv);
            if s.total < cfg.min_score {
                return (Ok(s), None, 0);
            }
            let text = dedup_text(conv);
            let key = split_key(&text);
            let fp = (cfg.exact || cfg.near > 0.0).then(|| dedup::fingerprint(&text));
            (Ok(s), fp, key)
        })
        .collect();

    let mut fates: Vec<Fate> = Vec::with_capacity(n);
    let mut scores = vec![None; n];
    let mut candidates: Vec<usize> = Vec::new();
    let mut fps: Vec<Fingerprint> = Vec::new();
    let mut keys = vec![0u64; n];
    for (i, (res, fp, key)) in staged.into_iter().enumerate() {
        keys[i] = key;
        match res {
            Err(r) => fates.push(Fate::Rejected(r)),
            Ok(s) => {
                scores[i] = Some(s);
                if s.total < cfg.min_score {
                    fates.push(Fate::Rejected(Rejection::new(
                        Reason::LowQuality,
                        format!(
                            "quality score {} is below filters.minQualityScore {}",
                            s.total, cfg.min_score
                        ),
                    )));
                } else {
                    fates.push(Fate::Train);
                    candidates.push(i);
                    if let Some(fp) = fp {
                        fps.push(fp);
                    }
                }
            }
        }
    }

    let mut clusters = vec![None; n];
    if !fps.is_empty() {
        let cand_scores: Vec<u8> = candidates.iter().map(|&i| scores[i].map_or(0, |s| s.total)).collect();
        let verdicts = dedup::dedup(&fps, &cand_scores, cfg.exact, cfg.near);
        for (k, v) in verdicts.into_iter().enumerate() {
            let i = candidates[k];
            match v {
                Verdict::Unique => {}
                Verdict::Representative { cluster } => clusters[i] = Some(cluster),
                Verdict::ExactDuplicateOf { keep, cluster } => {
                    fates[i] = Fate::Duplicate {
                        reason: Reason::ExactDuplicate,
                        keep: candidates[keep],
                        cluster,
                        similarity_pct: 100,
                    }
                }
                Verdict::NearDuplicateOf {
                    keep,
                    cluster,
                    similarity_pct,
                } => {
                    fates[i] = Fate::Duplicate {
                        reason: Reason::NearDuplicate,
                        keep: candidates[keep],
                        cluster,
                        similarity_pct,
                    }
                }
            }
        }
    }

    split(items, &mut fates, &keys, cfg);
    let stats = stats(items, &fates, &scores, &clusters, cfg);
    let (kept, rejected, duplicates) = (stats.kept, stats.rejected, stats.duplicates);
    if kept + rejected + duplicates != n || stats.train + stats.eval != kept {
        return Err(InvariantError {
            input: n,
            kept,
            rejected,
            duplicates,
        });
    }
    Ok(Outcome {
        fates,
        scores,
        clusters,
        stats,
    })
}

/// Split key of a record: a hash of its content, so the split does not move when files are reordered.
fn split_key(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeded hash split, stratified by topic: within each topic the records with the smallest seeded hashes go
/// to eval, round(n × evalFraction) of them, so every topic is represented in eval in proportion.
fn split(items: &[Item], fates: &mut [Fate], keys: &[u64], cfg: &Config) {
    let mut by_topic: BTreeMap<&str, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, f) in fates.iter().enumerate() {
        if *f == Fate::Train {
            let topic = items[i]
                .parsed
                .as_ref()
                .ok()
                .and_then(|c| c.topic.as_deref())
                .unwrap_or("");
            by_topic
                .entry(topic)
                .or_default()
                .push((mix(keys[i] ^ mix(cfg.seed)), i));
        }
    }
    for (_, mut members) in by_topic {
        members.sort_unstable();
        let n_eval = (members.len() as f64 * cfg.eval_fraction).round() as usize;
        for &(_, i) in members.iter().take(n_eval) {
            fates[i] = Fate::Eval;
        }
    }
}

fn stats(items: &[Item], fates: &[Fate], scores: &[Option<Score>], clusters: &[Option<usize>], cfg: &Config) -> Stats {
    let mut s = Stats {
        input: items.len(),
        min_quality_score: cfg.min_score,
        ..Stats::default()
    };
    let mut hist = [0usize; 10];
    let mut topics: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut comp = [0f64; 8];
    for (i, fate) in fates.iter().enumerate() {
        match fate {
            Fate::Train => s.train += 1,
            Fate::Eval => s.eval += 1,
            Fate::Rejected(r) => {
                s.rejected += 1;
                *s.reasons.entry(r.reason.as_str()).or_default() += 1;
            }
            Fate::Duplicate { reason, .. } => {
                s.duplicates += 1;
                *s.reasons.entry(reason.as_str()).or_default() += 1;
            }
        }
        if let Some(sc) = scores[i] {
            s.valid += 1;
            hist[(sc.total as usize / 10).min(9)] += 1;
            for (k, v) in [
                sc.length,
                sc.code_blocks,
                sc.cli_config,
                sc.technical_depth,
                sc.formatting,
                sc.tool_use,
                -sc.repetition_penalty,
                -sc.truncation_penalty,
            ]
            .into_iter()
            .enumerate()
            {
                comp[k] += v as f64;
            }
        }
        if let Ok(c) = &items[i].parsed {
            let t = topics
                .entry(c.topic.clone().unwrap_or_else(|| "untagged".into()))
                .or_default();
            t.1 += 1;
            if scores[i].is_some_and(|sc| sc.total >= cfg.min_score) {
                t.0 += 1;
            }
        }
    }
    s.kept = s.train + s.eval;
    s.clusters = clusters.iter().filter(|c| c.is_some()).count();
    s.score_histogram = hist
        .iter()
        .enumerate()
        .map(|(b, &count)| Bucket {
            bucket: if b == 9 {
                "90-100".into()
            } else {
                format!("{}-{}", b * 10, b * 10 + 9)
            },
            count,
        })
        .collect();
    s.topics = topics
        .into_iter()
        .map(|(name, (passed, total))| TopicStats { name, passed, total })
        .collect();
    if s.valid > 0 {
        let names = [
            "length",
            "codeBlocks",
            "cliConfig",
            "technicalDepth",
            "formatting",
            "toolUse",
            "repetitionPenalty",
            "truncationPenalty",
        ];
        for (k, name) in names.into_iter().enumerate() {
            s.mean_score_components
                .insert(name, ((comp[k] / s.valid as f64) * 100.0).round() as f32 / 100.0);
        }
    }
    s
}
