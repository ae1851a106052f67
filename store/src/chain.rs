//! Layer chain identity (OCI ChainID): the name of a stack of layers, and so of a filesystem
//! view. `ChainID(L0) = DiffID(L0)`, `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " +
//! DiffID(Ln))`. Snapshots are keyed by it: one layer's diff_id does not name a view, because
//! the same layer applied on another parent gives another tree.

use crate::digest::Digest;

/// The chain id of `parent` (the chain below, `None` for the first layer) plus `diff_id`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{} {}", p.as_str(), diff_id.as_str()).as_bytes()),
    }
}

/// The chain ids of every prefix of `diff_ids` (bottom first): element `i` names the view of
/// layers `0..=i`.
pub fn chain_ids<'a>(diff_ids: impl IntoIterator<Item = &'a Digest>) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::new();
    for d in diff_ids {
        let next = chain_id(out.last(), d);
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids([&a, &b]);
        assert_eq!(ids[0], a);
        let manual = Digest::of(format!("{} {}", a.as_str(), b.as_str()).as_bytes());
        assert_eq!(ids[1], manual);
        // Order matters, and the same top layer on another parent is another chain.
        assert_ne!(chain_ids([&b, &a])[1], ids[1]);
        assert_ne!(chain_id(Some(&b), &b), chain_id(Some(&a), &b));
    }

    /// A value computed independently (`printf '%s' "<x> <y>" | sha256sum`).
    #[test]
    fn chain_id_of_two_layers_matches_a_known_value() {
        let x = Digest::from_hex(&format!("{:064x}", 1)).unwrap();
        let y = Digest::from_hex(&format!("{:064x}", 2)).unwrap();
        assert_eq!(
            chain_ids([&x, &y])[1].hex(),
            "e0213565073dd272477933ef550455db21856966e444074f1492aef0939305ac"
        );
    }
}
