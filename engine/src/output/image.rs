//! `-o type=image[,name=NAME]`: names in the store, tagged with the `-t` names once the build
//! succeeded (pushing them is `--push`; `push=true` is refused when parsing).

use rbuild_store::Reference;

use super::{OutputSpec, OutputType};

/// Every name the build tags: the `-t` names, then each `type=image` output's own names, once.
pub fn names(tags: &[Reference], outputs: &[OutputSpec]) -> Vec<Reference> {
    let mut names = tags.to_vec();
    for spec in outputs {
        if spec.kind == OutputType::Image {
            for n in &spec.names {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
    }
    names
}
