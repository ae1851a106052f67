//! Property tests: parsers of untrusted input never panic, and reference normalisation is
//! stable (parsing the normalised form gives the same reference).

use proptest::prelude::*;
use rbuild_store::layer::{FlatTree, scan};
use rbuild_store::testing::TarBuilder;
use rbuild_store::{Limits, Reference};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the tar reader, the scanner or the flattener.
    #[test]
    fn tar_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = scan(&bytes[..], &Limits::default(), "fuzz");
        let _ = FlatTree::new().apply_layer(&bytes[..], &Limits::default(), "fuzz");
    }

    /// A valid header followed by corrupted bytes never panics either.
    #[test]
    fn corrupted_archives_never_panic(flip in 0usize..2048, value in any::<u8>(), name in "[a-z./]{1,30}") {
        let mut t = TarBuilder::new();
        t.file(&name, b"data").symlink("l", &name).hardlink("h", &name);
        let mut bytes = t.finish();
        let i = flip % bytes.len();
        bytes[i] = value;
        let _ = scan(&bytes[..], &Limits::default(), "fuzz");
        let _ = FlatTree::new().apply_layer(&bytes[..], &Limits::default(), "fuzz");
    }

    /// Normalisation is a fixed point, and never panics on arbitrary text.
    #[test]
    fn references_normalise_stably(s in "[a-zA-Z0-9._:/@-]{0,60}") {
        if let Ok(r) = Reference::parse(&s) {
            let again = Reference::parse(&r.to_string()).expect("normalised form parses");
            prop_assert_eq!(&again, &r);
            let familiar = Reference::parse(&r.familiar()).expect("familiar form parses");
            prop_assert_eq!(familiar, r);
        }
    }
}
