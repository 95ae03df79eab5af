//! Content digests: what every artifact, status field and worker result names a file or folder by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

/// A sha256 content digest. Written everywhere (status, results, spec.json annotations) as
/// `sha256:<64 lowercase hex digits>`; read from that form or from bare hex in any case, which is what users
/// paste from `sha256sum` into a ModelServing's `gguf.sha256`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 digest (want sha256:<64 hex digits> or the 64 hex digits alone)")]
pub struct DigestError(pub String);

impl Digest {
    pub const PREFIX: &'static str = "sha256:";

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The digest of `bytes`.
    pub fn of(bytes: impl AsRef<[u8]>) -> Self {
        use sha2::Digest as _;
        Digest(Sha256::digest(bytes.as_ref()).into())
    }

    /// The digest a finished hasher holds.
    pub fn from_hasher(h: Sha256) -> Self {
        use sha2::Digest as _;
        Digest(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits: the name of a content-addressed folder.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for messages and `kubectl get` columns.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let t = s.trim();
        let hex_part = t.strip_prefix(Self::PREFIX).unwrap_or(t);
        let mut bytes = [0u8; 32];
        if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut bytes).is_err() {
            return Err(DigestError(s.to_string()));
        }
        Ok(Digest(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// In a CRD a digest is a plain string; the field's doc comment says its form.
impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

/// A digest standing for `tag` in tests (the digest of the tag's bytes), as `sha256:<hex>`.
#[cfg(any(test, feature = "fake-api"))]
pub fn fake(tag: &str) -> String {
    Digest::of(tag).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_displays_one() {
        let d = Digest::of(b"abc");
        let hex = d.hex();
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        for text in [
            format!("sha256:{hex}"),
            hex.clone(),
            hex.to_uppercase(),
            format!(" sha256:{hex}\n"),
        ] {
            assert_eq!(Digest::parse(&text).unwrap(), d, "{text}");
        }
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"sha256:{hex}\""));
        assert_eq!(serde_json::from_str::<Digest>(&format!("\"{hex}\"")).unwrap(), d);
        assert_eq!(d.short(), "ba7816bf8f01");
    }

    #[test]
    fn rejects_what_is_not_a_digest() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "md5:ba7816bf8f01cfea414140de5dae2223",
            &"g".repeat(64),
            &"a".repeat(65),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?}");
        }
        let err = serde_json::from_str::<Digest>("\"sha256:1\"").unwrap_err().to_string();
        assert!(err.contains("not a sha256 digest"), "{err}");
    }
}
