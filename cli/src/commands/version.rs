//! `rbuild version`: what this binary is, shaped like `docker version`'s client section: the
//! version, the git commit and compiler it was built with (`build.rs`), the store format and
//! OCI specs it reads and writes, and the features built in. `--format json` prints one object
//! (the same keys a template such as `{{.Version}}` selects).

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::storeutil::render_template;
use crate::args::{GlobalArgs, Snapshotter};

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// `json` (one object) or a template like `{{.Version}}`.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// The facts, as the JSON `--format json` prints.
pub fn facts() -> Value {
    let platform = rbuild_store::Platform::host();
    let commit = env!("RBUILD_GIT_COMMIT");
    // The snapshotters are the `--snapshotter` choices (`auto` picks one of them).
    let snapshotters: Vec<String> = Snapshotter::value_variants()
        .iter()
        .filter(|s| **s != Snapshotter::Auto)
        .filter_map(|s| s.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect();
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "GitCommit": if commit.is_empty() { "unknown" } else { commit },
        "RustVersion": env!("RBUILD_RUSTC_VERSION"),
        "Os": platform.os,
        "Arch": platform.architecture,
        "Platform": platform.to_string(),
        "StoreFormat": rbuild_store::layout::FORMAT_VERSION,
        "OciImageSpec": rbuild_store::media::OCI_IMAGE_SPEC_VERSION,
        "OciImageLayout": rbuild_store::media::OCI_LAYOUT_VERSION,
        "Snapshotters": snapshotters,
        // Built in unconditionally: the executor's default seccomp profile
        // (executor/src/sandbox/seccomp.rs) and both cgroup versions (sandbox/cgroup.rs);
        // `rbuild info` says which cgroup version this host uses.
        "Seccomp": true,
        "Cgroups": ["v1", "v2"],
    })
}

pub fn run(_global: &GlobalArgs, args: VersionArgs) -> miette::Result<u8> {
    let v = facts();
    match args.format.as_deref() {
        Some("json") => println!("{v}"),
        Some(template) => println!("{}", render_template(template, &v)?),
        None => print!("{}", text(&v)),
    }
    Ok(0)
}

/// The human form: `Key:  value` lines under a heading, as docker prints them.
fn text(v: &Value) -> String {
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let rows = [
        ("Version", s("Version")),
        ("Git commit", s("GitCommit")),
        ("Rust version", s("RustVersion")),
        ("OS/Arch", s("Platform")),
        ("Store format", s("StoreFormat")),
        ("OCI image spec", s("OciImageSpec")),
        ("OCI image layout", s("OciImageLayout")),
        ("Snapshotters", list("Snapshotters")),
        (
            "Seccomp",
            if v["Seccomp"] == true {
                "default profile built in".to_string()
            } else {
                "no".to_string()
            },
        ),
        ("Cgroups", list("Cgroups")),
    ];
    let mut out = String::from("rbuild:\n");
    for (k, val) in rows {
        out.push_str(&format!(" {:<18}{val}\n", format!("{k}:")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_name_the_store_format_and_snapshotters() {
        let v = facts();
        assert_eq!(v["StoreFormat"], rbuild_store::layout::FORMAT_VERSION);
        assert_eq!(v["Snapshotters"], json!(["overlay", "copy"]));
        assert!(v["RustVersion"].as_str().unwrap().starts_with("rustc "));
        let t = text(&v);
        assert!(t.contains(" Store format:     1\n"), "{t}");
        assert!(t.contains(" Snapshotters:     overlay, copy\n"), "{t}");
    }
}
