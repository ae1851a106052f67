//! The command line itself: help, the bare build form, usage errors.

use crate::support::{rbuild, text};

/// `--help` lists the commands users look for.
#[test]
fn help_lists_commands() {
    let out = rbuild().arg("--help").output().unwrap();
    assert!(out.status.success());
    let (stdout, _) = text(&out);
    for word in ["build", "parse", "check", "--root"] {
        assert!(stdout.contains(word), "help lacks {word}: {stdout}");
    }
}

/// An unknown flag is a usage error with exit code 2.
#[test]
fn unknown_flag_is_usage_error() {
    let out = rbuild().args(["check", "--nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `rbuild -t x DIR` is parsed as a build (it fails on the missing context, not on usage).
#[test]
fn bare_form_is_build() {
    let out = rbuild().args(["build", "--help"]).output().unwrap();
    let (stdout, _) = text(&out);
    assert!(stdout.contains("--build-arg"));
    let bare = rbuild().args(["-t", "x", "--help"]).output().unwrap();
    assert_eq!(text(&bare).0, stdout);
}
