//! Exact and near-duplicate detection.
//!
//! Exact: SHA-256 of the conversation text lowercased with whitespace collapsed. Near: MinHash signatures
//! of word 3-shingles (punctuation dropped, so a copy that differs only in whitespace or punctuation has
//! similarity 1), LSH banding to find candidates, then a check of the signature agreement against the
//! threshold. Two records are only near-duplicates if their "facts" also agree — the numbers (ports,
//! addresses, counts), the polarity words (allow/deny, enable/disable, not) and the tool calls — because in
//! this domain "allow TCP 443" and "deny TCP 22" are different lessons even when nearly every word matches.
//! Each cluster keeps its highest-scoring member (ties: the first in input order).

use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub const NUM_PERM: usize = 128;

/// What dedup needs of one record; `text` is every non-system turn, tool calls included.
pub struct Fingerprint {
    pub exact: [u8; 16],
    pub minhash: Box<[u32; NUM_PERM]>,
    pub facts: u64,
}

/// Lowercased words joined by single spaces: what exact duplicates must agree on.
fn normalize(text: &str) -> String {
    if text.is_ascii() {
        // Most texts: one scan of the bytes. In ASCII, Unicode's white space is b' ' and b'\t'..=b'\r', and
        // lowercasing is per byte, so this is the general path's result without a char decode per character.
        let mut out = Vec::with_capacity(text.len());
        let space = |c: &u8| *c == b' ' || (b'\t'..=b'\r').contains(c);
        for w in text.as_bytes().split(space).filter(|w| !w.is_empty()) {
            if !out.is_empty() {
                out.push(b' ');
            }
            out.extend(w.iter().map(u8::to_ascii_lowercase));
        }
        // SAFETY: ASCII bytes in, ASCII bytes out.
        return unsafe { String::from_utf8_unchecked(out) };
    }
    let mut norm = String::with_capacity(text.len());
    for w in text.split_whitespace() {
        if !norm.is_empty() {
            norm.push(' ');
        }
        if w.is_ascii() {
            let start = norm.len();
            norm.push_str(w);
            norm[start..].make_ascii_lowercase();
        } else {
            for c in w.chars() {
                norm.extend(c.to_lowercase());
            }
        }
    }
    norm
}

pub fn fingerprint(text: &str) -> Fingerprint {
    let norm = normalize(text);
    let digest = Sha256::digest(norm.as_bytes());
    let mut exact = [0u8; 16];
    exact.copy_from_slice(&digest[..16]);
    // One pass over the words: each is hashed once (a shingle hash combines three word hashes, rather than
    // re-hashing the shingle's bytes), and numbers and polarity words go into the facts hash.
    let mut word_hashes: Vec<u64> = Vec::with_capacity(norm.len() / 4);
    let mut facts = FNV_OFFSET;
    let mut word = |w: &str| {
        word_hashes.push(hash_word(w.as_bytes()));
        let is_number = w.bytes().all(|c| c.is_ascii_digit());
        // A `match` on string literals compiles to a switch on length, then a compare: cheaper than a list scan.
        let polarity = matches!(
            w,
            "allow"
                | "allowed"
                | "permit"
                | "deny"
                | "denied"
                | "block"
                | "blocked"
                | "drop"
                | "reject"
                | "not"
                | "no"
                | "never"
                | "enable"
                | "disable"
                | "inbound"
                | "outbound"
        );
        if is_number || polarity {
            facts = fnv(fnv(facts, w.as_bytes()), b" ");
        }
    };
    if norm.is_ascii() {
        // Same split, on bytes: in ASCII text the alphanumeric characters are exactly the ASCII ones.
        for w in norm.as_bytes().split(|c| !c.is_ascii_alphanumeric()) {
            if !w.is_empty() {
                // SAFETY: a run of ASCII alphanumerics is valid UTF-8.
                word(unsafe { std::str::from_utf8_unchecked(w) });
            }
        }
    } else {
        for w in norm.split(|c: char| !c.is_alphanumeric()) {
            if !w.is_empty() {
                word(w);
            }
        }
    }
    // Word 3-shingles; a text of fewer than three words is one shingle of all of them.
    let shingles: Vec<u32> = if word_hashes.len() < 3 {
        vec![mix(word_hashes.iter().fold(FNV_OFFSET, |h, &w| mix(h ^ w))) as u32]
    } else {
        word_hashes
            .windows(3)
            .map(|w| mix(mix(mix(w[0]) ^ w[1]) ^ w[2]) as u32)
            .collect()
    };
    Fingerprint {
        exact,
        minhash: Box::new(minhash(&shingles)),
        facts,
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A word's hash, eight bytes at a time (a byte-serial FNV was a tenth of the run); the length is mixed in so
/// that zero padding of the last chunk cannot make two words equal.
fn hash_word(w: &[u8]) -> u64 {
    let mut h = FNV_OFFSET ^ w.len() as u64;
    for chunk in w.chunks(8) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(b));
    }
    h
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Permutation i is x ↦ a_i·x + b_i (mod 2^32) with odd a_i: a bijection on 32-bit shingle hashes that
/// compiles to vector multiply-adds.
fn perms() -> &'static ([u32; NUM_PERM], [u32; NUM_PERM]) {
    static P: std::sync::OnceLock<([u32; NUM_PERM], [u32; NUM_PERM])> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let mut a = [0u32; NUM_PERM];
        let mut b = [0u32; NUM_PERM];
        for i in 0..NUM_PERM {
            a[i] = (mix(2 * i as u64 + 1) as u32) | 1;
            b[i] = mix(2 * i as u64 + 2) as u32;
        }
        (a, b)
    })
}

/// MinHash signature of a set of shingle hashes. Per shingle this is 128 multiply-add-min lanes: on baseline
/// x86-64 (SSE2) a 32-bit vector multiply does not exist and the loop runs as emulated pairs, so where the CPU
/// has AVX2 the same code is compiled 8 lanes wide and picked at run time. Integer arithmetic: same result.
fn minhash(shingles: &[u32]) -> [u32; NUM_PERM] {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2(shingles: &[u32]) -> [u32; NUM_PERM] {
            minhash_body(shingles)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(shingles) };
        }
    }
    minhash_body(shingles)
}

#[inline(always)]
fn minhash_body(shingles: &[u32]) -> [u32; NUM_PERM] {
    let (a, b) = perms();
    let mut sig = [u32::MAX; NUM_PERM];
    for &x in shingles {
        for i in 0..NUM_PERM {
            let v = a[i].wrapping_mul(x).wrapping_add(b[i]);
            sig[i] = sig[i].min(v);
        }
    }
    sig
}

/// Share of equal signature slots: an unbiased estimate of the Jaccard similarity of the shingle sets.
pub fn similarity(a: &[u32; NUM_PERM], b: &[u32; NUM_PERM]) -> f64 {
    a.iter().zip(b.iter()).filter(|(x, y)| x == y).count() as f64 / NUM_PERM as f64
}

/// Bands × rows for a threshold: the split of the signature that minimizes the summed probability of
/// missing a pair above the threshold and of proposing one below it (integrated over similarity).
pub fn lsh_params(threshold: f64) -> (usize, usize) {
    let prob = |s: f64, b: usize, r: usize| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
    let integrate = |f: &dyn Fn(f64) -> f64, lo: f64, hi: f64| {
        let n = 200;
        let h = (hi - lo) / n as f64;
        (0..n).map(|k| f(lo + (k as f64 + 0.5) * h) * h).sum::<f64>()
    };
    let mut best = (1, NUM_PERM, f64::MAX);
    for b in 1..=NUM_PERM {
        let r = NUM_PERM / b;
        let fp = integrate(&|s| prob(s, b, r), 0.0, threshold);
        let fneg = integrate(&|s| 1.0 - prob(s, b, r), threshold, 1.0);
        let err = 0.5 * fp + 0.5 * fneg;
        if err < best.2 {
            best = (b, r, err);
        }
    }
    (best.0, best.1)
}

/// Outcome for one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Unique,
    /// Kept as the representative of cluster `cluster`.
    Representative {
        cluster: usize,
    },
    ExactDuplicateOf {
        keep: usize,
        cluster: usize,
    },
    NearDuplicateOf {
        keep: usize,
        cluster: usize,
        similarity_pct: u8,
    },
}

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] as usize != x {
            let p = self.0[x] as usize;
            self.0[x] = self.0[p];
            x = p;
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo as u32;
        }
    }
}

/// Clusters records and picks one to keep per cluster. `scores[i]` ranks members; `near` is the threshold
/// (0 disables near dedup). Cluster ids number clusters in input order of their first member.
pub fn dedup(fps: &[Fingerprint], scores: &[u8], exact: bool, near: f64) -> Vec<Verdict> {
    let n = fps.len();
    let mut uf = UnionFind((0..n as u32).collect());
    if exact {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.par_sort_unstable_by_key(|&i| (fps[i as usize].exact, i));
        for w in order.windows(2) {
            if fps[w[0] as usize].exact == fps[w[1] as usize].exact {
                uf.union(w[0] as usize, w[1] as usize);
            }
        }
    }
    if near > 0.0 {
        let (bands, rows) = lsh_params(near);
        for band in 0..bands {
            let mut keys: Vec<(u64, u32)> = fps
                .par_iter()
                .enumerate()
                .map(|(i, f)| {
                    let slot = &f.minhash[band * rows..(band + 1) * rows];
                    let h = slot.iter().fold(band as u64, |h, &v| mix(h ^ v as u64));
                    (h, i as u32)
                })
                .collect();
            keys.par_sort_unstable();
            let mut start = 0;
            while start < keys.len() {
                let mut end = start + 1;
                while end < keys.len() && keys[end].0 == keys[start].0 {
                    end += 1;
                }
                // Compare each member with the bucket's first few distinct roots: enough to join a cluster
                // without the quadratic cost of a huge bucket.
                for k in start + 1..end {
                    let i = keys[k].1 as usize;
                    for j in keys[start..k].iter().take(8) {
                        let j = j.1 as usize;
                        if uf.find(i) == uf.find(j) {
                            break;
                        }
                        if fps[i].facts == fps[j].facts && similarity(&fps[i].minhash, &fps[j].minhash) >= near {
                            uf.union(i, j);
                            break;
                        }
                    }
                }
                start = end;
            }
        }
    }
    // Pick the best member of every cluster.
    let mut best: Vec<u32> = (0..n as u32).collect();
    let mut size = vec![0u32; n];
    for i in 0..n {
        let r = uf.find(i);
        size[r] += 1;
        let b = best[r] as usize;
        if scores[i] > scores[b] {
            best[r] = i as u32;
        }
    }
    let mut cluster_id = vec![usize::MAX; n];
    let mut next = 0;
    let mut out = vec![Verdict::Unique; n];
    for i in 0..n {
        let r = uf.find(i);
        if size[r] < 2 {
            continue;
        }
        if cluster_id[r] == usize::MAX {
            cluster_id[r] = next;
            next += 1;
        }
        let (keep, cluster) = (best[r] as usize, cluster_id[r]);
        out[i] = if i == keep {
            Verdict::Representative { cluster }
        } else if fps[i].exact == fps[keep].exact {
            Verdict::ExactDuplicateOf { keep, cluster }
        } else {
            let s = similarity(&fps[i].minhash, &fps[keep].minhash);
            Verdict::NearDuplicateOf {
                keep,
                cluster,
                similarity_pct: (s * 100.0).round() as u8,
            }
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_of_ascii_text_equals_the_unicode_rules() {
        // Every ASCII white space character Unicode has (and 0x1C-0x1F, which it does not count), runs of them,
        // leading and trailing space, mixed case.
        let texts = [
            "  Allow\tTCP\n\n443 \x0b from\x0cZone-A\r\nto\x1cB  ",
            "ONE",
            "",
            " \t\n ",
            "a  b\u{0}c",
        ];
        for t in texts {
            let want = t
                .split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(normalize(t), want, "{t:?}");
        }
        // Beyond ASCII: Unicode white space separates words and letters lowercase by the Unicode rules.
        assert_eq!(normalize("Règle\u{a0}ÉTAT  Zone"), "règle état zone");
    }

    const A: &str = "To check whether traffic is allowed, open Analyze, enter the source 10.20.1.15, the destination \
        172.16.5.10 and TCP port 443, keep NAT enabled and read the verdict for every hop on the path. The result \
        names the rule that matched on each firewall, and the first hop that denies the flow is highlighted.";

    fn run(texts: &[&str], scores: &[u8], near: f64) -> Vec<Verdict> {
        let fps: Vec<Fingerprint> = texts.iter().map(|t| fingerprint(t)).collect();
        dedup(&fps, scores, true, near)
    }

    #[test]
    fn exact_duplicates_ignore_case_and_whitespace() {
        let b = A.to_uppercase().replace(' ', "  \n");
        let v = run(&[A, &b], &[60, 60], 0.0);
        assert_eq!(v[0], Verdict::Representative { cluster: 0 });
        assert_eq!(v[1], Verdict::ExactDuplicateOf { keep: 0, cluster: 0 });
    }

    #[test]
    fn whitespace_and_punctuation_variants_are_near_duplicates() {
        let b = A.replace(", ", " ; ").replace('.', "!").replace(" the ", "  the\t");
        let fa = fingerprint(A);
        let fb = fingerprint(&b);
        assert_ne!(fa.exact, fb.exact, "punctuation changes the exact hash");
        assert_eq!(similarity(&fa.minhash, &fb.minhash), 1.0);
        let v = run(&[A, &b], &[55, 70], 0.8);
        // The higher-scoring member is kept, whatever its position.
        assert_eq!(v[1], Verdict::Representative { cluster: 0 });
        assert!(
            matches!(
                v[0],
                Verdict::NearDuplicateOf {
                    keep: 1,
                    cluster: 0,
                    similarity_pct: 100
                }
            ),
            "{:?}",
            v[0]
        );
    }

    #[test]
    fn a_pair_that_differs_in_meaning_is_kept() {
        // Same wording, different port and opposite action: two different lessons.
        let b = A.replace("443", "22").replace("allowed", "denied");
        let fa = fingerprint(A);
        let fb = fingerprint(&b);
        assert!(
            similarity(&fa.minhash, &fb.minhash) > 0.6,
            "nearly every shingle is shared"
        );
        let v = run(&[A, &b], &[60, 60], 0.8);
        assert_eq!(v, vec![Verdict::Unique, Verdict::Unique]);
    }

    #[test]
    fn unrelated_texts_stay_apart_and_edits_beyond_the_threshold_too() {
        let other = "BGP selects the best path by local preference, AS path length, origin and MED; OSPF uses cost.";
        assert_eq!(run(&[A, other], &[60, 60], 0.8), vec![Verdict::Unique, Verdict::Unique]);
        // Rewrite half of the sentence: well below 0.8.
        let half = format!(
            "{} Then export the report as PDF for the auditors and archive it.",
            &A[..A.len() / 2]
        );
        assert_eq!(run(&[A, &half], &[60, 60], 0.8), vec![Verdict::Unique, Verdict::Unique]);
    }

    #[test]
    fn lsh_params_fit_the_signature_and_move_with_the_threshold() {
        for t in [0.5, 0.7, 0.8, 0.9, 1.0] {
            let (b, r) = lsh_params(t);
            assert!(b * r <= NUM_PERM && b >= 1 && r >= 1, "{t}: {b}x{r}");
        }
        let (b_low, _) = lsh_params(0.5);
        let (b_high, _) = lsh_params(0.9);
        assert!(b_low > b_high, "a lower threshold needs more, shorter bands");
    }

    #[test]
    fn clusters_are_numbered_in_input_order() {
        let x = "Palo Alto evaluates NAT policy before security policy, using pre-NAT addresses and post-NAT zones.";
        let v = run(&[x, A, x, A], &[50, 50, 50, 50], 0.8);
        assert_eq!(v[0], Verdict::Representative { cluster: 0 });
        assert_eq!(v[1], Verdict::Representative { cluster: 1 });
        assert_eq!(v[2], Verdict::ExactDuplicateOf { keep: 0, cluster: 0 });
        assert_eq!(v[3], Verdict::ExactDuplicateOf { keep: 1, cluster: 1 });
    }
}
