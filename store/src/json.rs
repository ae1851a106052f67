//! JSON in and out. Out: deterministic bytes (every object's keys sorted, via
//! `serde_json::Value`'s BTreeMap), so the same config always has the same digest. In: strict
//! parsing of untrusted documents — size cap and I-JSON's "no duplicate names" rule, which
//! serde_json does not enforce (it keeps the last value, the CVE-2014-8179 differential).

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};

use crate::error::{Error, Result};

/// Serialize with sorted keys and no insignificant whitespace.
pub fn to_canonical_vec<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let v = serde_json::to_value(value)
        .map_err(|e| Error::json("document", format!("cannot serialize: {e}")))?;
    serde_json::to_vec(&v).map_err(|e| Error::json("document", format!("cannot serialize: {e}")))
}

/// Parse untrusted bytes as `T`: at most `max` bytes, valid UTF-8 JSON, no duplicate keys.
/// `what` names the document in errors (e.g. "manifest sha256:...").
pub fn parse_strict<T: DeserializeOwned>(bytes: &[u8], max: u64, what: &str) -> Result<T> {
    check_strict(bytes, max, what)?;
    serde_json::from_slice(bytes).map_err(|e| Error::json(what, e.to_string()))
}

/// The checks of `parse_strict` without deserializing into a type.
pub fn check_strict(bytes: &[u8], max: u64, what: &str) -> Result<()> {
    if bytes.len() as u64 > max {
        return Err(Error::Limit {
            what: format!("{what} ({} bytes)", bytes.len()),
            limit: format!("{max} bytes"),
            help: "manifests, indexes and configs this large are not produced by real tools"
                .to_string(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    NoDuplicates { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| Error::json(what, e.to_string()))?;
    de.end().map_err(|e| Error::json(what, e.to_string()))
}

/// Walks a JSON document, failing on an object with a repeated key or nesting beyond 128.
struct NoDuplicates {
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let depth = self.nested::<A::Error>()?;
        while seq.next_element_seed(NoDuplicates { depth })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let depth = self.nested::<A::Error>()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value_seed(NoDuplicates { depth })?;
        }
        Ok(())
    }
}

impl NoDuplicates {
    fn nested<E: de::Error>(&self) -> std::result::Result<u32, E> {
        if self.depth >= 128 {
            return Err(E::custom("nesting deeper than 128 levels"));
        }
        Ok(self.depth + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let err = check_strict(br#"{"a":{"b":1,"b":2}}"#, 1000, "doc").unwrap_err();
        assert!(err.to_string().contains("duplicate key `b`"), "{err}");
        check_strict(br#"{"a":[{"b":1},{"b":2}]}"#, 1000, "doc").unwrap();
    }

    #[test]
    fn oversized_and_invalid_documents_are_rejected() {
        assert!(check_strict(b"{}", 1, "doc").is_err());
        assert!(check_strict(b"{", 100, "doc").is_err());
        assert!(check_strict(b"{} x", 100, "doc").is_err());
        assert!(check_strict(b"\xff", 100, "doc").is_err());
    }

    #[test]
    fn canonical_output_sorts_keys() {
        #[derive(Serialize)]
        struct S {
            z: u8,
            a: BTreeMap<String, u8>,
        }
        let s = S {
            z: 1,
            a: [("y".to_string(), 2), ("b".to_string(), 3)].into(),
        };
        assert_eq!(
            to_canonical_vec(&s).unwrap(),
            br#"{"a":{"b":3,"y":2},"z":1}"#
        );
    }
}
