//! The default seccomp profile of a sandbox. The policy is data: `seccomp-profile.json` beside
//! this file (embedded with `include_str!`) lists what is allowed, with the effect of Docker's
//! default profile for Docker's default capabilities. This module turns it into the JSON
//! filter format of the `seccompiler` crate (which resolves system call names for the running
//! architecture and emits the classic BPF), as two filters the kernel stacks: the allowlist
//! (everything else: EPERM) and the errno overrides (clone3: ENOSYS). The filter is installed
//! just before exec, without `no_new_privs` (as Docker: setuid programs keep working), while the
//! command process still holds `CAP_SYS_ADMIN`.
//!
//! Limits: the filter checks the architecture first, so 32-bit (i386) or x32 system calls on an
//! x86_64 host are refused (the process is killed); and system calls newer than seccompiler's
//! tables are refused with EPERM.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

/// The embedded profile.
const PROFILE: &str = include_str!("seccomp-profile.json");

#[derive(Debug, Deserialize)]
struct Profile {
    default_errno: u32,
    allow: Vec<String>,
    allow_on: BTreeMap<String, Vec<String>>,
    allow_if: Vec<Conditional>,
    errno: Vec<ErrnoRule>,
}

#[derive(Debug, Deserialize)]
struct Conditional {
    syscall: String,
    args: Vec<Arg>,
}

#[derive(Debug, Deserialize)]
struct Arg {
    index: u8,
    op: String,
    value: u64,
    #[serde(default)]
    mask: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ErrnoRule {
    syscall: String,
    errno: u32,
}

/// The compiled filters, in installation order.
pub(super) type Filters = Vec<seccompiler::BpfProgram>;

/// The profile compiled for `arch` (`x86_64`, `aarch64`).
pub(super) fn compile_for(arch: &str) -> Result<Filters, String> {
    let profile: Profile =
        serde_json::from_str(PROFILE).map_err(|e| format!("the seccomp profile: {e}"))?;
    let target: seccompiler::TargetArch = arch
        .try_into()
        .map_err(|_| format!("no seccomp profile for architecture {arch}"))?;
    let mut rules: Vec<Value> = profile
        .allow
        .iter()
        .chain(profile.allow_on.get(arch).into_iter().flatten())
        .map(|name| json!({ "syscall": name }))
        .collect();
    for c in &profile.allow_if {
        let mut args = Vec::new();
        for a in &c.args {
            let op = match (a.op.as_str(), a.mask) {
                ("masked_eq", Some(mask)) => json!({ "masked_eq": mask }),
                ("eq" | "ne" | "lt" | "gt" | "le" | "ge", None) => json!(a.op),
                _ => return Err(format!("seccomp profile: bad condition on {}", c.syscall)),
            };
            // Arguments compared as 32-bit values are the ints of the C prototypes; the
            // personality query value and clone flags need the full width.
            let kind =
                if a.value > u64::from(u32::MAX) || a.mask.is_some() || a.value == 0xffff_ffff {
                    "qword"
                } else {
                    "dword"
                };
            args.push(json!({ "index": a.index, "type": kind, "op": op, "val": a.value }));
        }
        rules.push(json!({ "syscall": c.syscall, "args": args }));
    }
    let mut filters = serde_json::Map::new();
    filters.insert(
        "allow".into(),
        json!({
            "mismatch_action": { "errno": profile.default_errno },
            "match_action": "allow",
            "filter": rules,
        }),
    );
    for (i, e) in profile.errno.iter().enumerate() {
        filters.insert(
            format!("errno{i}"),
            json!({
                "mismatch_action": "allow",
                "match_action": { "errno": e.errno },
                "filter": [{ "syscall": e.syscall }],
            }),
        );
    }
    let doc = serde_json::to_vec(&Value::Object(filters)).map_err(|e| e.to_string())?;
    let mut compiled = seccompiler::compile_from_json(doc.as_slice(), target)
        .map_err(|e| format!("compiling the seccomp profile: {e}"))?;
    let mut out = vec![
        compiled
            .remove("allow")
            .ok_or("the seccomp allowlist is missing")?,
    ];
    for i in 0..profile.errno.len() {
        out.push(
            compiled
                .remove(&format!("errno{i}"))
                .ok_or("a seccomp errno filter is missing")?,
        );
    }
    Ok(out)
}

/// The profile for the architecture rbuild was built for.
pub(super) fn compile() -> Result<Filters, String> {
    compile_for(std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_compiles_for_every_supported_architecture() {
        for arch in ["x86_64", "aarch64"] {
            let filters = compile_for(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
            assert_eq!(filters.len(), 2);
            assert!(filters[0].len() > 300, "{arch}: {}", filters[0].len());
        }
    }

    #[test]
    fn the_profile_denies_what_docker_denies() {
        let profile: Profile = serde_json::from_str(PROFILE).unwrap();
        let allowed = |name: &str| {
            profile.allow.iter().any(|n| n == name)
                || profile.allow_on.values().flatten().any(|n| n == name)
        };
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "init_module",
            "reboot",
            "swapon",
            "settimeofday",
            "perf_event_open",
            "userfaultfd",
            "fsopen",
            "open_tree",
            "move_mount",
            "pivot_root",
            "clone",
            "clone3",
            "socket",
            "personality",
        ] {
            assert!(!allowed(name), "{name} is allowed unconditionally");
        }
        for name in [
            "read", "execve", "ptrace", "chroot", "setuid", "capset", "mknodat",
        ] {
            assert!(allowed(name), "{name} is not allowed");
        }
        assert_eq!(profile.default_errno, 1, "EPERM");
        let clone = profile
            .allow_if
            .iter()
            .find(|c| c.syscall == "clone")
            .unwrap();
        assert_eq!(clone.args[0].mask, Some(0x7e02_0000));
    }
}
