//! Fuzz word expansion: any word with either escape character expands or fails cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(word) = std::str::from_utf8(data) {
        let env = |name: &str| (name.len() % 2 == 0).then(|| name.repeat(2));
        let _ = rbuild_parser::shell::expand_words(word, &env, '\\');
        let _ = rbuild_parser::shell::expand_word(word, &env, '`');
    }
});
