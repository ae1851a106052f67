//! `rbuild info`: this host and store as rbuild sees them, shaped like `docker info`: the store
//! (root, disk use, format, image and container counts), the snapshotter, the cgroup hierarchy
//! sandboxes use, whether rbuild runs as root or rootless (in its user namespace, with how many
//! ids, or why it cannot), which platforms RUN steps can run for (natively
//! or under a registered binfmt_misc emulator: `rbuild_executor::emulation`, the same check a
//! build makes), and the `registries.toml` in use. Everything is read from the host when the
//! command runs; `--format json` prints one object.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use clap::Args;
use rbuild_executor::emulation::{RunSupport, check_run_platform};
use rbuild_store::Platform;
use rbuild_store::refs::KIND_CONTAINER;
use serde_json::{Value, json};

use super::storeutil::{human_size, open_store, render_template};
use crate::args::{GlobalArgs, Snapshotter};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// `json` (one object) or a template like `{{.Store.Root}}`.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// The platforms whose RUN steps rbuild knows how to run (`executor::emulation`'s list).
const PLATFORMS: &[&str] = &[
    "linux/amd64",
    "linux/386",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64le",
    "linux/loong64",
];

pub fn run(global: &GlobalArgs, args: InfoArgs) -> miette::Result<u8> {
    let v = facts(global)?;
    match args.format.as_deref() {
        Some("json") => println!("{v}"),
        Some(template) => println!("{}", render_template(template, &v)?),
        None => print!("{}", text(&v)),
    }
    Ok(0)
}

fn facts(global: &GlobalArgs) -> miette::Result<Value> {
    // Rootless: enter rbuild's user namespace as every store command does; when that is not
    // possible, say why instead of failing.
    let euid = rustix::process::geteuid().as_raw();
    let rootless = match rbuild_executor::sandbox::userns::enter(global.userns_mode()) {
        Ok(()) if euid == 0 && !rbuild_store::userns::rootless() => Value::Null,
        Ok(()) => json!({
            "Uid": euid,
            "Uids": mapped_ids(),
            "Ready": true,
            "Problem": null,
        }),
        Err(e) => {
            use miette::Diagnostic;
            let help = e.help().map(|h| format!(" ({h})")).unwrap_or_default();
            json!({"Uid": euid, "Uids": 0, "Ready": false, "Problem": format!("{e}{help}")})
        }
    };
    let store = open_store(global)?;
    let root = store.root().to_path_buf();
    let images = store.list_images()?.len();
    let containers = store.list_refs(KIND_CONTAINER)?.len();

    let overlay_in_kernel = std::fs::read_to_string("/proc/filesystems")
        .map(|t| filesystems_have(&t, "overlay"))
        .unwrap_or(false);
    let (snapshotter, why) = match global.snapshotter {
        Some(Snapshotter::Overlay) => ("overlay", "--snapshotter overlay"),
        Some(Snapshotter::Copy) => ("copy", "--snapshotter copy"),
        None | Some(Snapshotter::Auto) if overlay_in_kernel => (
            "overlay",
            "auto: the kernel has overlayfs; copy if a mount is refused",
        ),
        None | Some(Snapshotter::Auto) => ("copy", "auto: the kernel has no overlayfs"),
    };

    let cgroup = match rbuild_executor::sandbox::memory_hierarchy() {
        Some((version, dir)) => json!({"Version": version, "Path": dir.display().to_string()}),
        None => json!({"Version": null, "Path": null}),
    };

    let mut emulators = Vec::new();
    for p in PLATFORMS {
        let platform: Platform = p.parse().expect("the platform list parses");
        let (support, detail) = match check_run_platform(&platform) {
            Ok(RunSupport::Native) => ("native", String::new()),
            Ok(RunSupport::Emulated(h)) => (
                "emulated",
                format!(
                    "{} ({}, flags {})",
                    h.name,
                    h.interpreter.display(),
                    h.flags
                ),
            ),
            Err(e) => ("no", e.to_string()),
        };
        emulators.push(json!({"Platform": p, "Support": support, "Detail": detail}));
    }

    let registries = rbuild_registry::config::RegistriesConfig::path_in_use(Some(&root))
        .map(|p| p.display().to_string());

    Ok(json!({
        "Store": {
            "Root": root.display().to_string(),
            "Size": disk_use(&root),
            "Format": rbuild_store::layout::FORMAT_VERSION,
            "Images": images,
            "Containers": containers,
        },
        "Snapshotter": {"Name": snapshotter, "Why": why},
        "Cgroup": cgroup,
        "Rootless": !rootless.is_null(),
        "RootlessDetail": rootless,
        "Uid": euid,
        "Platforms": emulators,
        "RegistriesConfig": registries,
    }))
}

/// How many uids this process's user namespace maps (its `uid_map` counts).
fn mapped_ids() -> u64 {
    std::fs::read_to_string("/proc/self/uid_map")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}

/// Whether `/proc/filesystems` lists `name`.
fn filesystems_have(text: &str, name: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().next_back() == Some(name))
}

/// Bytes of the regular files under `root`, a file with several hard links once (snapshots
/// and the blobs they were unpacked from may share inodes).
fn disk_use(root: &Path) -> u64 {
    let mut seen = HashSet::new();
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))))
        .map(|m| m.len())
        .sum()
}

fn text(v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_string(),
        other => other.to_string(),
    };
    let mut out = String::new();
    let mut row = |indent: usize, k: &str, val: String| {
        let key = format!("{k}:");
        let line = format!("{:indent$}{key:<w$}{val}", "", w = 20 - indent);
        out.push_str(line.trim_end());
        out.push('\n');
    };
    let st = &v["Store"];
    row(0, "Store", String::new());
    row(1, "Root", s(&st["Root"]));
    row(
        1,
        "Size",
        human_size(st["Size"].as_u64().unwrap_or_default()),
    );
    row(1, "Format", s(&st["Format"]));
    row(1, "Images", s(&st["Images"]));
    row(1, "Containers", s(&st["Containers"]));
    row(
        0,
        "Snapshotter",
        format!(
            "{} ({})",
            s(&v["Snapshotter"]["Name"]),
            s(&v["Snapshotter"]["Why"])
        ),
    );
    let cg = &v["Cgroup"];
    row(
        0,
        "Cgroup version",
        match cg["Version"].as_u64() {
            Some(n) => format!("{n} ({})", s(&cg["Path"])),
            None => "none usable (no memory controller: --memory is refused)".to_string(),
        },
    );
    let rl = &v["RootlessDetail"];
    row(
        0,
        "Rootless",
        if v["Rootless"] != true {
            "no".to_string()
        } else if rl["Ready"] == true {
            format!(
                "yes (uid {} is root of rbuild's user namespace, {} container ids mapped)",
                rl["Uid"], rl["Uids"]
            )
        } else {
            format!(
                "yes (uid {}), and it cannot work: {}",
                rl["Uid"],
                s(&rl["Problem"])
            )
        },
    );
    row(0, "Platforms", String::new());
    for p in v["Platforms"].as_array().into_iter().flatten() {
        let support = s(&p["Support"]);
        let detail = s(&p["Detail"]);
        let shown = match support.as_str() {
            "native" => "native".to_string(),
            "emulated" => format!("emulated by {detail}"),
            _ => "cannot run RUN steps".to_string(),
        };
        row(1, &s(&p["Platform"]), shown);
    }
    row(
        0,
        "Registries config",
        match &v["RegistriesConfig"] {
            Value::String(p) => p.clone(),
            _ => "none (defaults)".to_string(),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_filesystems_lines() {
        let t = "nodev\tsysfs\nnodev\toverlay\n\text4\n";
        assert!(filesystems_have(t, "overlay"));
        assert!(filesystems_have(t, "ext4"));
        assert!(!filesystems_have(t, "btrfs"));
    }

    #[test]
    fn every_listed_platform_parses() {
        for p in PLATFORMS {
            p.parse::<Platform>().unwrap();
        }
    }

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 1000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("c"), [0u8; 24]).unwrap();
        assert_eq!(disk_use(dir.path()), 1024);
    }
}
