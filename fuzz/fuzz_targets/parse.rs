//! Fuzz the Dockerfile parser: any bytes must parse without panicking, every diagnostic span
//! must lie inside the text, and the AST dump must be producible.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = rbuild_parser::parse_bytes(data);
    for d in &parsed.parsed.diagnostics {
        assert!(d.span.end <= parsed.text.len());
    }
    let _ = parsed.parsed.dockerfile.dump();
});
