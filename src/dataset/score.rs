//! Quality score 0–100 with every component reported, so a user can see why a record scored what it did.
//!
//! Points (maxima): answer length 30, code blocks 15, CLI/config content 20, technical depth 25,
//! formatting 10, tool use 20; penalties: repetition up to −25, truncation −20. The sum is clamped to 0–100.
//! What is scored is the assistant's side of the conversation; the seed's threshold of 50 keeps answers that
//! are long and concrete, or short but precise tool calls.

use super::load::Conversation;
use crate::chat::Role;
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    pub total: u8,
    pub length: f32,
    pub code_blocks: f32,
    pub cli_config: f32,
    pub technical_depth: f32,
    pub formatting: f32,
    pub tool_use: f32,
    pub repetition_penalty: f32,
    pub truncation_penalty: f32,
}

pub const LENGTH_MAX: f32 = 30.0;
pub const CODE_MAX: f32 = 15.0;
pub const CLI_MAX: f32 = 20.0;
pub const DEPTH_MAX: f32 = 25.0;
pub const FORMAT_MAX: f32 = 10.0;
pub const TOOL_MAX: f32 = 20.0;
pub const REPETITION_MAX: f32 = 25.0;
pub const TRUNCATION: f32 = 20.0;

pub fn score(conv: &Conversation) -> Score {
    let mut assistant = conv.messages.iter().filter(|m| m.role == Role::Assistant);
    // The common single-answer record is scored in place; only multi-turn answers are joined into a copy.
    let answer: std::borrow::Cow<'_, str> = match (assistant.next(), assistant.next()) {
        (Some(only), None) => only.content.as_str().into(),
        _ => {
            let mut joined = String::new();
            for m in conv.messages.iter().filter(|m| m.role == Role::Assistant) {
                if !joined.is_empty() {
                    joined.push_str("\n\n");
                }
                joined.push_str(&m.content);
            }
            joined.into()
        }
    };
    let mut calls = 0usize;
    for m in conv.messages.iter().filter(|m| m.role == Role::Assistant) {
        calls += m
            .tool_calls
            .iter()
            .filter(|c| c.arguments.as_object().is_some_and(|o| !o.is_empty()))
            .count();
    }
    let last = conv.messages.iter().rev().find(|m| m.role == Role::Assistant);
    let ends_with_call = last.is_some_and(|m| !m.tool_calls.is_empty() && m.content.trim().is_empty());
    score_text(&answer, calls, ends_with_call)
}

/// `calls`: well-formed tool calls made; `ends_with_call`: the conversation's last turn is a tool call
/// (nothing can be truncated there).
pub fn score_text(answer: &str, calls: usize, ends_with_call: bool) -> Score {
    let chars = answer.chars().count();
    let mut s = Score {
        length: length_points(chars),
        code_blocks: code_points(answer),
        cli_config: cli_points(answer),
        technical_depth: depth_points(answer),
        formatting: format_points(answer),
        tool_use: if calls > 0 { TOOL_MAX } else { 0.0 },
        repetition_penalty: repetition_penalty(answer),
        truncation_penalty: if !ends_with_call && looks_truncated(answer) {
            TRUNCATION
        } else {
            0.0
        },
        total: 0,
    };
    let sum = s.length + s.code_blocks + s.cli_config + s.technical_depth + s.formatting + s.tool_use
        - s.repetition_penalty
        - s.truncation_penalty;
    s.total = sum.round().clamp(0.0, 100.0) as u8;
    s
}

/// Saturating in the log of the length: 100 chars ≈ 8, 400 ≈ 19, 1,000 ≈ 26, 1,500+ = 30.
fn length_points(chars: usize) -> f32 {
    if chars < 40 {
        return 0.0;
    }
    let x = ((chars as f32).ln() - 40f32.ln()) / (1500f32.ln() - 40f32.ln());
    (x.clamp(0.0, 1.0) * LENGTH_MAX * 100.0).round() / 100.0
}

fn code_points(text: &str) -> f32 {
    let (fences, inline) = code_spans(text);
    match (fences / 2, inline) {
        (0, 0) => 0.0,
        (0, _) => 5.0,
        (1, _) => 10.0,
        _ => CODE_MAX,
    }
}

/// ``` fences (left to right, not overlapping), and inline `code` spans outside fenced blocks (backtick pairs
/// per prose segment), in one scan that jumps from backtick to backtick.
fn code_spans(text: &str) -> (usize, usize) {
    let b = text.as_bytes();
    let (mut fences, mut inline, mut ticks, mut i) = (0usize, 0usize, 0usize, 0usize);
    while let Some(p) = memchr::memchr(b'`', &b[i..]) {
        i += p;
        if b[i..].starts_with(b"```") {
            // The segment that ends here is prose when an even number of fences precede it.
            if fences % 2 == 0 {
                inline += ticks / 2;
            }
            ticks = 0;
            fences += 1;
            i += 3;
        } else {
            ticks += 1;
            i += 1;
        }
    }
    if fences % 2 == 0 {
        inline += ticks / 2;
    }
    (fences, inline)
}

/// Lines that are commands or configuration: what makes an answer actionable for a network engineer.
fn cli_points(text: &str) -> f32 {
    const PREFIXES: &[&str] = &[
        "$ ",
        "sudo ",
        "curl ",
        "kubectl ",
        "aws ",
        "az ",
        "gcloud ",
        "iptables ",
        "nft ",
        "ip ",
        "show ",
        "set ",
        "delete ",
        "commit",
        "configure",
        "access-list ",
        "interface ",
        "router ",
        "object ",
        "object-group ",
        "nat ",
        "crypto ",
        "config ",
        "edit ",
        "ping ",
        "traceroute ",
        "tcpdump ",
        "nmap ",
        "dig ",
        "nslookup ",
        "openssl ",
        "ssh ",
        "terraform ",
        "ansible",
        "python",
        "fireweave ",
        "request ",
        "test ",
        "permit ",
        "deny ",
    ];
    let mut lines = 0usize;
    for line in text.lines() {
        let l = line.trim_start();
        // Case-insensitive prefix tests on the bytes: no lowercased copy of every line.
        let lb = l.as_bytes();
        let command = PREFIXES
            .iter()
            // The prefixes are lowercase: the first byte rules out almost all of them at once.
            .any(|p| {
                lb.len() >= p.len()
                    && lb[0].to_ascii_lowercase() == p.as_bytes()[0]
                    && lb[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            })
            || l.eq_ignore_ascii_case("next")
            || l.eq_ignore_ascii_case("end");
        // key: value / key = value / "key": value, as in YAML, INI, JSON and CLI output.
        let config = {
            let (k, rest) = match lb.iter().position(|&c| c == b':' || c == b'=') {
                Some(at) => (&l[..at], &l[at + 1..]),
                None => ("", ""),
            };
            let k = k.trim().trim_matches('"');
            // Prose such as "Note: the rule ..." is not configuration: keys are lowercase, values short.
            !k.is_empty()
                && k.len() <= 40
                && k.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
                && k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
                && (1..=4).contains(&rest.split_whitespace().count())
        };
        if command || config || has_address(l) {
            lines += 1;
        }
    }
    (lines as f32 * 2.5).min(CLI_MAX)
}

/// An IPv4 address or CIDR in the line: a run of digits, dots and slashes whose part before any '/' is four
/// dot-separated numbers of one to three digits, each below 256. Scanned as bytes (a non-ASCII byte ends a run,
/// as the character it belongs to would), with no token list.
fn has_address(line: &str) -> bool {
    line.as_bytes()
        .split(|&c| !(c.is_ascii_digit() || c == b'.' || c == b'/'))
        .any(is_ipv4_or_cidr)
}

/// `a.b.c.d` or `a.b.c.d/len`; runs of digits that are not (account ids, timestamps, versions) are not.
fn is_ipv4_or_cidr(run: &[u8]) -> bool {
    let mut halves = run.splitn(2, |&c| c == b'/');
    let ip = halves.next().unwrap_or_default();
    match halves.next() {
        None => is_ipv4(ip),
        Some(prefix) => is_ipv4(ip) && small_decimal(prefix).is_some_and(|len| len <= 32),
    }
}

fn is_ipv4(ip: &[u8]) -> bool {
    let mut parts = 0;
    for p in ip.split(|&c| c == b'.') {
        parts += 1;
        if parts > 4 || small_decimal(p).is_none_or(|v| v >= 256) {
            return false;
        }
    }
    parts == 4
}

/// One to three ASCII digits as a number. The length is checked before any arithmetic: text is full of long
/// digit runs (a 12-digit AWS account id, a 13-digit millisecond timestamp) that would overflow a fold.
fn small_decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// Distinct domain terms (networking, security, cloud, FireWeave): 2.5 points each.
fn depth_points(text: &str) -> f32 {
    const TERMS: &[&str] = &[
        "firewall",
        "nat",
        "snat",
        "dnat",
        "acl",
        "tcp",
        "udp",
        "icmp",
        "bgp",
        "ospf",
        "eigrp",
        "vlan",
        "vpc",
        "vnet",
        "subnet",
        "cidr",
        "tls",
        "ssl",
        "ipsec",
        "vpn",
        "ike",
        "zone",
        "zones",
        "policy",
        "policies",
        "rule",
        "rules",
        "shadowed",
        "shadowing",
        "dns",
        "dhcp",
        "arp",
        "mtu",
        "latency",
        "route",
        "routing",
        "gateway",
        "proxy",
        "ids",
        "ips",
        "siem",
        "soc",
        "edr",
        "waf",
        "ddos",
        "pci-dss",
        "pci",
        "soc2",
        "nist",
        "hipaa",
        "iso",
        "compliance",
        "jwt",
        "oauth",
        "api",
        "endpoint",
        "token",
        "rbac",
        "mfa",
        "certificate",
        "encryption",
        "aes",
        "sha256",
        "hash",
        "segmentation",
        "microsegmentation",
        "zero",
        "trust",
        "least",
        "privilege",
        "servicenow",
        "jira",
        "topology",
        "palo",
        "panos",
        "pan-os",
        "cisco",
        "asa",
        "ftd",
        "fortinet",
        "fortigate",
        "aws",
        "azure",
        "gcp",
        "nsg",
        "security",
        "group",
        "ingress",
        "egress",
        "inbound",
        "outbound",
        "port",
        "ports",
        "protocol",
        "session",
        "stateful",
        "stateless",
        "syslog",
        "netflow",
        "packet",
        "threat",
        "vulnerability",
        "cve",
        "exploit",
        "malware",
        "phishing",
        "incident",
        "audit",
        "logging",
        "kubernetes",
        "namespace",
        "networkpolicy",
        "ssh",
        "http",
        "https",
        "rest",
        "webhook",
        "json",
        "yaml",
        "csv",
        "rollback",
        "approval",
        "workflow",
        "change",
        "ticket",
        "object",
        "objects",
        "address",
        "service",
        "application",
        "app-id",
        "user-id",
        "decryption",
        "hairpin",
        "asymmetric",
        "ha",
        "failover",
        "cluster",
        "worker",
        "queue",
    ];
    // The distinct terms seen are bits; each word is looked up in an open-addressing table keyed by its
    // lowercased bytes read as three integers: one hash and usually one probe per word, where a binary search
    // over the sorted terms cost eight string comparisons and was the largest part of scoring.
    static TABLE: std::sync::OnceLock<TermTable> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| TermTable::new(TERMS));
    const _: () = assert!(TERMS.len() <= 256);
    let mut seen = [0u64; 4];
    // Words are runs of ASCII letters, digits and '-'; any other byte (a non-ASCII character's included) ends one.
    for w in text.as_bytes().split(|&c| !(c.is_ascii_alphanumeric() || c == b'-')) {
        if w.len() < 2 {
            continue;
        }
        if let Some(i) = term_key(w).and_then(|k| table.find(&k)) {
            seen[i / 64] |= 1 << (i % 64);
        }
    }
    let distinct: u32 = seen.iter().map(|b| b.count_ones()).sum();
    (distinct as f32 * 2.5).min(DEPTH_MAX)
}

/// A word of up to 24 bytes, ASCII-lowercased and zero-padded, as three little-endian integers (None when
/// longer: no term is).
fn term_key(w: &[u8]) -> Option<[u64; 3]> {
    if w.len() > 24 {
        return None;
    }
    let mut buf = [0u8; 24];
    for (d, s) in buf.iter_mut().zip(w) {
        *d = s.to_ascii_lowercase();
    }
    Some(std::array::from_fn(|i| {
        u64::from_le_bytes(buf[8 * i..8 * i + 8].try_into().expect("8 bytes"))
    }))
}

/// The domain terms, by key, in a power-of-two table at most a quarter full (so a miss, the common case,
/// ends at an empty slot almost at once). A slot holds the term's number plus one; 0 marks it empty.
struct TermTable {
    slots: Vec<([u64; 3], u16)>,
}

impl TermTable {
    const BITS: u32 = 10;

    fn new(terms: &[&str]) -> Self {
        assert!(terms.len() * 4 <= 1 << Self::BITS, "the term table would be too full");
        let mut t = TermTable {
            slots: vec![([0; 3], 0); 1 << Self::BITS],
        };
        let mut next = 0u16;
        for term in terms {
            let k = term_key(term.as_bytes()).expect("terms are short");
            let mut i = Self::slot(&k);
            loop {
                match t.slots[i] {
                    (_, 0) => {
                        next += 1;
                        t.slots[i] = (k, next);
                        break;
                    }
                    // A term listed twice counts once.
                    (kk, _) if kk == k => break,
                    _ => i = (i + 1) & ((1 << Self::BITS) - 1),
                }
            }
        }
        t
    }

    fn slot(k: &[u64; 3]) -> usize {
        let h = (k[0] ^ k[1].rotate_left(21) ^ k[2].rotate_left(42)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - Self::BITS)) as usize
    }

    /// The term's number (0-based, in first-listed order), if `k` is a term.
    fn find(&self, k: &[u64; 3]) -> Option<usize> {
        let mut i = Self::slot(k);
        loop {
            match &self.slots[i] {
                (_, 0) => return None,
                (kk, n) if kk == k => return Some(usize::from(*n) - 1),
                _ => i = (i + 1) & ((1 << Self::BITS) - 1),
            }
        }
    }
}

/// Markdown structure: lists, numbered steps, headings, emphasis, tables, paragraphs.
fn format_points(text: &str) -> f32 {
    let (mut bullets, mut numbered, mut heading, mut table) = (0usize, 0usize, false, 0usize);
    for l in text.lines().map(str::trim_start) {
        if l.starts_with("- ") || l.starts_with("* ") {
            bullets += 1;
        }
        let d = l.bytes().take_while(u8::is_ascii_digit).count();
        if d > 0 && d < 3 && (l[d..].starts_with(". ") || l[d..].starts_with(") ")) {
            numbered += 1;
        }
        heading |= l.starts_with('#') && l.trim_start_matches('#').starts_with(' ');
        if l.starts_with('|') {
            table += 1;
        }
    }
    let mut p: f32 = 0.0;
    if bullets >= 2 {
        p += 3.0;
    }
    if numbered >= 2 {
        p += 3.0;
    }
    if heading {
        p += 1.5;
    }
    if text.contains("**") {
        p += 1.0;
    }
    if table >= 2 {
        p += 1.5;
    }
    if text.contains("\n\n") {
        p += 1.0;
    }
    p.min(FORMAT_MAX)
}

/// Share of repeated word 3-grams: generation loops ("the rule the rule the rule") and copy-pasted paragraphs.
fn repetition_penalty(text: &str) -> f32 {
    // Words are compared by a 64-bit hash of their lowercased letters, and 3-grams by a hash of those: no
    // String per word and no set of string triples, which made this the costliest score component. Two
    // distinct 3-grams would have to collide in 64 bits to be miscounted.
    let mut words: Vec<u64> = Vec::with_capacity(text.len() / 5);
    if text.is_ascii() {
        // The same words, found on bytes: in ASCII, Unicode's white space is b' ' and b'\t'..=b'\r', and the
        // alphanumeric characters are the ASCII ones.
        let space = |c: &u8| *c == b' ' || (b'\t'..=b'\r').contains(c);
        for w in text.as_bytes().split(space).filter(|w| !w.is_empty()) {
            let w = match w.iter().position(u8::is_ascii_alphanumeric) {
                Some(s) => &w[s..=w.iter().rposition(u8::is_ascii_alphanumeric).unwrap_or(s)],
                None => &[],
            };
            words.push(w.iter().fold(FNV_OFFSET, |h, c| fnv_byte(h, c.to_ascii_lowercase())));
        }
    } else {
        for w in text.split_whitespace() {
            let w = w.trim_matches(|c: char| !c.is_alphanumeric());
            let mut h = FNV_OFFSET;
            for c in w.chars() {
                for l in c.to_lowercase() {
                    for b in l.encode_utf8(&mut [0; 4]).bytes() {
                        h = fnv_byte(h, b);
                    }
                }
            }
            words.push(h);
        }
    }
    if words.len() < 30 {
        return 0.0;
    }
    let mut grams: Vec<u64> = words.windows(3).map(|w| mix(mix(w[0] ^ mix(w[1])) ^ w[2])).collect();
    let total = grams.len();
    grams.sort_unstable();
    grams.dedup();
    let repeated = 1.0 - grams.len() as f32 / total as f32;
    // Technical prose repeats some 3-grams ("the firewall rule"); only a sizeable share is a defect.
    (((repeated - 0.15) / 0.35).clamp(0.0, 1.0) * REPETITION_MAX * 100.0).round() / 100.0
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[inline]
fn fnv_byte(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ends mid-sentence, mid-list or inside an open code fence.
pub fn looks_truncated(text: &str) -> bool {
    let t = text.trim_end();
    if t.is_empty() {
        return false;
    }
    if code_spans(t).0 % 2 == 1 {
        return true;
    }
    if t.ends_with("...") && !t.ends_with("....") {
        return true;
    }
    let last = t.chars().last().unwrap_or('.');
    if t.ends_with("```")
        || matches!(
            last,
            '.' | '!' | '?' | ')' | ']' | '}' | '"' | '\'' | '`' | '*' | '|' | ':'
        )
    {
        return false;
    }
    // A final line that is a list item, a table row or a command is complete without a full stop.
    // `t` ends in a non-space, so its last line is what follows the last newline.
    let last_line = t.rsplit('\n').next().unwrap_or("").trim_start();
    let structured = last_line.starts_with("- ")
        || last_line.starts_with("* ")
        || last_line.starts_with('|')
        || last_line.bytes().next().is_some_and(|c| c.is_ascii_digit()) && last_line.contains(". ");
    if structured && last_line.split_whitespace().count() >= 3 {
        return false;
    }
    last.is_alphanumeric() || matches!(last, ',' | ';' | '-' | '(' | '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_grows_and_saturates() {
        let a = score_text(&"word ".repeat(20), 0, false).length;
        let b = score_text(&"word ".repeat(100), 0, false).length;
        let c = score_text(&"word ".repeat(1000), 0, false).length;
        assert!(a > 0.0 && a < b && b < c, "{a} {b} {c}");
        assert_eq!(c, LENGTH_MAX);
        assert_eq!(score_text("short.", 0, false).length, 0.0);
    }

    #[test]
    fn code_blocks_score() {
        assert_eq!(score_text("No code here.", 0, false).code_blocks, 0.0);
        assert_eq!(score_text("Run `show run` now.", 0, false).code_blocks, 5.0);
        assert_eq!(
            score_text("Run:\n```\nshow run\n```\nDone.", 0, false).code_blocks,
            10.0
        );
        assert_eq!(
            score_text("```\na\n```\nand\n```\nb\n```\nDone.", 0, false).code_blocks,
            CODE_MAX
        );
    }

    #[test]
    fn cli_and_config_lines_score() {
        assert_eq!(
            score_text("Plain prose without any commands at all.", 0, false).cli_config,
            0.0
        );
        let s = score_text(
            "show access-list\nkubectl get pods\nport: 443\nsource 10.1.2.0/24 is allowed.",
            0,
            false,
        );
        assert_eq!(s.cli_config, 10.0);
        let many = "set rulebase security rules x action allow\n".repeat(20);
        assert_eq!(score_text(&many, 0, false).cli_config, CLI_MAX);
    }

    #[test]
    fn technical_depth_counts_distinct_terms() {
        assert_eq!(score_text("The cat sat on the mat.", 0, false).technical_depth, 0.0);
        let s = score_text("The firewall NAT and the firewall ACL for TCP.", 0, false);
        assert_eq!(s.technical_depth, 4.0 * 2.5);
        let all = "firewall nat acl tcp udp bgp ospf vlan vpc subnet cidr tls ipsec vpn zone dns";
        assert_eq!(score_text(all, 0, false).technical_depth, DEPTH_MAX);
    }

    #[test]
    fn term_table_finds_exactly_its_terms() {
        let terms = ["firewall", "nat", "pci-dss", "microsegmentation", "nat", "ha"];
        let t = TermTable::new(&terms);
        let find = |w: &str| term_key(w.as_bytes()).and_then(|k| t.find(&k));
        // Numbered in first-listed order; the repeated "nat" is the same term.
        assert_eq!(find("firewall"), Some(0));
        assert_eq!(find("NAT"), Some(1));
        assert_eq!(find("PCI-DSS"), Some(2));
        assert_eq!(find("MicroSegmentation"), Some(3));
        assert_eq!(find("ha"), Some(4));
        // Prefixes, extensions and zero-padding look-alikes are not terms.
        for w in [
            "fire",
            "firewalls",
            "na",
            "nat0",
            "h",
            "pci",
            "a-very-long-word-beyond-24-bytes",
        ] {
            assert_eq!(find(w), None, "{w}");
        }
        // Every real term is found, under any case, and misses end (the table never fills).
        let real = TermTable::new(&["tcp", "udp", "bgp", "ospf", "vlan"]);
        for w in ["TCP", "Udp", "bgp", "OSPF", "vLaN"] {
            assert!(term_key(w.as_bytes()).and_then(|k| real.find(&k)).is_some(), "{w}");
        }
    }

    #[test]
    fn formatting_rewards_structure() {
        assert_eq!(score_text("One flat sentence.", 0, false).formatting, 0.0);
        let s = score_text(
            "## Steps\n\n1. First\n2. Second\n\n- a\n- b\n\n**Note** done.\n| a | b |\n|---|---|",
            0,
            false,
        );
        assert_eq!(s.formatting, FORMAT_MAX);
    }

    #[test]
    fn tool_use_needs_real_arguments() {
        assert_eq!(score_text("", 1, true).tool_use, TOOL_MAX);
        assert_eq!(score_text("", 0, true).tool_use, 0.0);
    }

    #[test]
    fn repetition_is_penalized() {
        let fresh = "Firewalls filter packets by zone and rule, routers forward them by prefix, and switches learn \
                     MAC addresses per port so frames reach the right host without flooding every segment of a \
                     network that grows over time.";
        assert_eq!(score_text(fresh, 0, false).repetition_penalty, 0.0);
        let looped = "the rule allows the traffic. ".repeat(20);
        let s = score_text(&looped, 0, false);
        assert_eq!(s.repetition_penalty, REPETITION_MAX);
    }

    #[test]
    fn truncation_is_penalized() {
        assert_eq!(
            score_text("The rule allows the traffic and then the", 0, false).truncation_penalty,
            TRUNCATION
        );
        assert_eq!(
            score_text("Run this:\n```\nshow run", 0, false).truncation_penalty,
            TRUNCATION
        );
        assert_eq!(
            score_text("The rule allows the traffic.", 0, false).truncation_penalty,
            0.0
        );
        assert_eq!(
            score_text("Steps:\n- check the route table entry", 0, false).truncation_penalty,
            0.0
        );
        // A conversation that ends in a tool call is complete.
        assert_eq!(score_text("", 1, true).truncation_penalty, 0.0);
    }

    #[test]
    fn total_is_the_clamped_sum() {
        let s = score_text("The rule allows the traffic and then the", 0, false);
        let sum = s.length + s.code_blocks + s.cli_config + s.technical_depth + s.formatting + s.tool_use
            - s.repetition_penalty
            - s.truncation_penalty;
        assert_eq!(s.total, sum.round().clamp(0.0, 100.0) as u8);
    }
    #[test]
    fn addresses_are_recognized_and_long_numbers_do_not_overflow() {
        // Each of these once overflowed the digit fold (a panic with overflow checks on, a silently wrapped
        // value in a release build): numbers of ten or more digits in a dotted or bare run.
        for line in [
            "account 123456789012 in us-east-1",
            "at 1733312345678 ms the rule matched",
            "1733312345678.123.4.5",
            "4294967296.1.1.1",
            "99999999999999999999999999.1.1.1/24",
        ] {
            assert!(!has_address(line), "{line}");
        }
        for line in [
            "allow 10.0.0.5 to 10.1.0.10",
            "route 192.168.0.0/16 via x",
            "1.2.3.4/32",
            "0.0.0.0/0",
        ] {
            assert!(has_address(line), "{line}");
        }
        for line in [
            "999.1.1.1",
            "1.2.3.4/33",
            "1.2.3.4/",
            "version 1.2.3",
            "version 1.2.3.4.5",
            "1..2.3",
            "1.2.3.4/8/16",
        ] {
            assert!(!has_address(line), "{line}");
        }
    }
}
