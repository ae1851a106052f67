//! The device cgroup of a sandbox: which device nodes its processes may open. As with runc's
//! default allowlist, any node may be created (`mknod`, as in docker), but only the standard
//! character devices may be read or written: null, zero, full, random, urandom, tty, console,
//! ptmx and the `/dev/pts` terminals. Everything else (a disk, a loop device) fails with EPERM.
//!
//! cgroup v1: a child of our own group in the `devices` hierarchy with `a` denied and the
//! allowlist written to `devices.allow`. cgroup v2 has no devices controller; the kernel asks a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the group instead. There is no
//! well-kept pure-Rust crate for loading such a program (aya and libbpf-rs need a BPF
//! toolchain or a C library, for 20 instructions), so [`program`] assembles it by hand from the
//! same rule table, as runc and youki do; each instruction is documented and unit-tested.
//! `RBUILD_DEVICE_CGROUP=v1|v2` forces one mechanism (tests run both on a hybrid host).

use std::io;
use std::path::{Path, PathBuf};

/// Device type of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Char,
    Block,
}

/// Access bits, as the kernel's `BPF_DEVCG_ACC_*`.
const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;

/// One allowlist entry: `None` major/minor is a wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

const fn chr(major: u32, minor: Option<u32>) -> Rule {
    Rule {
        kind: Kind::Char,
        major: Some(major),
        minor,
        access: MKNOD | READ | WRITE,
    }
}

/// What a sandbox may do with devices (runc's default allowlist, without tun/tap). mknod of
/// any character or block device is allowed (opening it is another matter); one rule per type,
/// since a v1 rule of type `a` would reset the group to allow-all.
pub(super) const ALLOWED: [Rule; 11] = [
    Rule {
        kind: Kind::Char,
        major: None,
        minor: None,
        access: MKNOD,
    },
    Rule {
        kind: Kind::Block,
        major: None,
        minor: None,
        access: MKNOD,
    },
    chr(1, Some(3)), // /dev/null
    chr(1, Some(5)), // /dev/zero
    chr(1, Some(7)), // /dev/full
    chr(1, Some(8)), // /dev/random
    chr(1, Some(9)), // /dev/urandom
    chr(5, Some(0)), // /dev/tty
    chr(5, Some(1)), // /dev/console
    chr(5, Some(2)), // /dev/ptmx
    chr(136, None),  // /dev/pts/*
];

/// The v1 `devices.allow` line of a rule (`c 1:3 rwm`).
fn v1_line(rule: &Rule) -> String {
    let kind = match rule.kind {
        Kind::Char => "c",
        Kind::Block => "b",
    };
    let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    let mut access = String::new();
    for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
        if rule.access & bit != 0 {
            access.push(c);
        }
    }
    format!("{kind} {}:{} {access}", num(rule.major), num(rule.minor))
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(super) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X: dst = src
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K: dst &= imm
const ALU64_RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K: dst >>= imm
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + 1 + off
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT: return r0

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// Registers: r1 = ctx, r2 = device type, r3 = requested access, r4 = major, r5 = minor,
/// r6 = scratch, r0 = the verdict.
const CTX: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const TMP: u8 = 6;

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// The `BPF_PROG_TYPE_CGROUP_DEVICE` program for `rules`: returns 1 (allow) when a rule covers
/// the request, else 0 (EPERM).
///
/// The context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
/// where `access_type` is `(access << 16) | type`.
pub(super) fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        // r2 = ctx->access_type; r2 &= 0xffff            → the device type
        insn(LDX_MEM_W, TYPE, CTX, 0, 0),
        insn(ALU64_AND_K, TYPE, 0, 0, 0xffff),
        // r3 = ctx->access_type; r3 >>= 16               → the requested access bits
        insn(LDX_MEM_W, ACCESS, CTX, 0, 0),
        insn(ALU64_RSH_K, ACCESS, 0, 0, 16),
        // r4 = ctx->major; r5 = ctx->minor
        insn(LDX_MEM_W, MAJOR, CTX, 4, 0),
        insn(LDX_MEM_W, MINOR, CTX, 8, 0),
    ];
    for rule in rules {
        // Each rule is a block of tests; a failed test jumps past the block (to the next rule).
        let mut block = Vec::new();
        match rule.kind {
            Kind::Char => block.push(insn(JMP_JNE_K, TYPE, 0, 0, DEV_CHAR)),
            Kind::Block => block.push(insn(JMP_JNE_K, TYPE, 0, 0, DEV_BLOCK)),
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, MAJOR, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, MINOR, 0, 0, minor as i32));
        }
        // r6 = r3 & ~allowed; if r6 != 0 → something asked for is not allowed by this rule.
        block.push(insn(ALU64_MOV_X, TMP, ACCESS, 0, 0));
        block.push(insn(ALU64_AND_K, TMP, 0, 0, !(rule.access as i32)));
        block.push(insn(JMP_JNE_K, TMP, 0, 0, 0));
        // r0 = 1; return → allowed.
        block.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        // Point every conditional jump at the first instruction after the block.
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    // No rule matched: r0 = 0; return → denied.
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// Which mechanism confines a sandbox's devices.
#[derive(Debug)]
enum Mechanism {
    /// A group of ours in the v1 `devices` hierarchy (removed on drop).
    V1(PathBuf),
    /// A v2 group with the BPF program attached; removed on drop when `owned`.
    V2 { dir: PathBuf, owned: bool },
}

/// One sandbox's device confinement; the group is removed on drop.
#[derive(Debug)]
pub struct DeviceCgroup {
    mechanism: Mechanism,
}

impl DeviceCgroup {
    /// Confine a sandbox's devices. `v2_group` is the sandbox's v2 group when one exists
    /// already (its memory cgroup): a process is in one group per hierarchy, so the program
    /// must be attached there. `Ok(None)`: no cgroup mechanism is available here.
    pub fn create(v2_group: Option<&Path>) -> io::Result<Option<DeviceCgroup>> {
        let forced = std::env::var("RBUILD_DEVICE_CGROUP").ok();
        Self::create_as(v2_group, forced.as_deref())
    }

    /// [`DeviceCgroup::create`] with the mechanism forced (`v1`, `v2`) or chosen (`None`).
    fn create_as(
        v2_group: Option<&Path>,
        forced: Option<&str>,
    ) -> io::Result<Option<DeviceCgroup>> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup")?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let (v1, v2) = locate(&cgroups, &mounts);
        let use_v1 = match forced {
            Some("v1") => true,
            Some("v2") => false,
            _ => v1.is_some() && v2_group.is_none(),
        };
        let not_writable = || io::Error::from(io::ErrorKind::PermissionDenied);
        if use_v1 {
            let Some(parent) = v1 else {
                return Err(io::Error::other("no cgroup v1 `devices` hierarchy"));
            };
            let dir = super::cgroup::new_group(&parent, "rbuild-dev")?.ok_or_else(not_writable)?;
            let cgroup = DeviceCgroup {
                mechanism: Mechanism::V1(dir.clone()),
            };
            std::fs::write(dir.join("devices.deny"), "a")?;
            for rule in &ALLOWED {
                std::fs::write(dir.join("devices.allow"), v1_line(rule))?;
            }
            return Ok(Some(cgroup));
        }
        let (dir, owned) = match v2_group {
            Some(dir) => (dir.to_path_buf(), false),
            None => {
                let Some(point) = v2 else {
                    return match forced {
                        Some("v2") => Err(io::Error::other("no cgroup v2 hierarchy")),
                        _ => Ok(None),
                    };
                };
                let parent = point.join("rbuild");
                match std::fs::create_dir(&parent) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                let dir =
                    super::cgroup::new_group(&parent, "rbuild-dev")?.ok_or_else(not_writable)?;
                (dir, true)
            }
        };
        let cgroup = DeviceCgroup {
            mechanism: Mechanism::V2 {
                dir: dir.clone(),
                owned,
            },
        };
        super::sys::attach_device_program(&dir, &program(&ALLOWED))?;
        Ok(Some(cgroup))
    }

    /// Whether the group is another's (the v2 memory cgroup), which moves the process.
    pub fn shared(&self) -> bool {
        matches!(self.mechanism, Mechanism::V2 { owned: false, .. })
    }

    /// Move process `pid` (and so its future children) into the group.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        match &self.mechanism {
            Mechanism::V1(dir) => std::fs::write(dir.join("cgroup.procs"), pid.to_string()),
            Mechanism::V2 { dir, owned: true } => {
                std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            }
            // The owner of the group (the memory cgroup) moves the process.
            Mechanism::V2 { owned: false, .. } => Ok(()),
        }
    }
}

impl Drop for DeviceCgroup {
    fn drop(&mut self) {
        let dir = match &self.mechanism {
            Mechanism::V1(dir) | Mechanism::V2 { dir, owned: true } => dir,
            Mechanism::V2 { owned: false, .. } => return,
        };
        for _ in 0..50 {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => return,
            }
        }
        tracing::warn!(dir = %dir.display(), "cannot remove the sandbox's device cgroup");
    }
}

/// Our group in the v1 `devices` hierarchy, and the v2 hierarchy's mount point.
fn locate(proc_cgroup: &str, mountinfo: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    (
        super::cgroup::v1_group(proc_cgroup, mountinfo, "devices"),
        super::cgroup::v2_mount(mountinfo),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the program in a tiny interpreter of the opcodes it uses.
    fn eval(prog: &[Insn], kind: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | kind as u32), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = ctx[(i.off / 4) as usize] as u64;
                }
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                ALU64_AND_K => r[dst] &= i.imm as i64 as u64,
                ALU64_RSH_K => r[dst] >>= i.imm,
                JMP_JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_the_standard_devices() {
        let p = program(&ALLOWED);
        let c = DEV_CHAR;
        let b = DEV_BLOCK;
        // The standard character devices: read, write, mknod.
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
        ] {
            assert_eq!(
                eval(&p, c, READ | WRITE, major, minor),
                1,
                "{major}:{minor}"
            );
        }
        assert_eq!(eval(&p, c, READ, 136, 7), 1, "a pts terminal");
        // mknod of anything, but no open of it.
        assert_eq!(eval(&p, b, MKNOD, 7, 0), 1);
        assert_eq!(eval(&p, c, MKNOD, 10, 229), 1);
        assert_eq!(eval(&p, b, READ, 7, 0), 0, "a loop device");
        assert_eq!(eval(&p, b, WRITE, 8, 0), 0, "a disk");
        assert_eq!(eval(&p, b, READ, 1, 3), 0, "block 1:3 is not /dev/null");
        assert_eq!(eval(&p, c, READ, 1, 1), 0, "/dev/mem");
        assert_eq!(eval(&p, c, READ | WRITE, 10, 229), 0, "/dev/fuse");
        assert_eq!(
            eval(&p, c, READ | MKNOD, 7, 0),
            0,
            "asking for more than mknod"
        );
    }

    #[test]
    fn instructions_are_encoded_as_the_kernel_expects() {
        let p = program(&[chr(1, Some(3))]);
        // r2 = *(u32 *)(r1 + 0): dst 2, src 1.
        assert_eq!(
            p[0],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 0,
                imm: 0
            }
        );
        // r4 = *(u32 *)(r1 + 4).
        assert_eq!(
            p[4],
            Insn {
                code: 0x61,
                regs: 0x14,
                off: 4,
                imm: 0
            }
        );
        // if r2 != 2 goto +7 (past the char rule's block of 8 instructions).
        assert_eq!(
            p[6],
            Insn {
                code: 0x55,
                regs: 0x02,
                off: 7,
                imm: 2
            }
        );
        // r6 &= ~7, then r0 = 1, exit.
        assert_eq!(
            p[10],
            Insn {
                code: 0x57,
                regs: 0x06,
                off: 0,
                imm: !7
            }
        );
        assert_eq!(
            p[12],
            Insn {
                code: 0xb7,
                regs: 0x00,
                off: 0,
                imm: 1
            }
        );
        assert_eq!(p[13].code, 0x95);
        assert_eq!(p.len(), 16);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn v1_lines_follow_the_devices_allow_syntax() {
        let lines: Vec<String> = ALLOWED.iter().map(v1_line).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[1], "b *:* m");
        assert_eq!(lines[2], "c 1:3 rwm");
        assert_eq!(lines[10], "c 136:* rwm");
        assert!(
            lines.iter().all(|l| !l.starts_with('a')),
            "`a` resets a v1 group to allow-all"
        );
    }

    #[test]
    fn hierarchies_are_found_in_hybrid_and_unified_layouts() {
        let cgroup = "5:devices:/jobs/1\n4:memory:/x\n0::/\n";
        let mountinfo = "36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n\
                         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate(cgroup, mountinfo),
            (
                Some(PathBuf::from("/sys/fs/cgroup/devices/jobs/1")),
                Some(PathBuf::from("/sys/fs/cgroup/unified"))
            )
        );
        let unified = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate("0::/user.slice\n", unified),
            (None, Some(PathBuf::from("/sys/fs/cgroup")))
        );
    }

    /// Open `node` from a process placed in a fresh device cgroup (forced to `mechanism`);
    /// the shell's message tells the cgroup's EPERM from anything else.
    fn open_confined(mechanism: &str, node: &Path) -> String {
        use std::io::Write;
        let cg = DeviceCgroup::create_as(None, Some(mechanism))
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"))
            .unwrap_or_else(|| panic!("{mechanism}: no cgroup hierarchy"));
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("read go; (: < \"$1\") 2>&1 && echo open-ok")
            .arg("sh")
            .arg(node)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cg.add(child.id() as i32).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Live, as root: a process in the group opens /dev/null-like nodes but not /dev/mem-like
    /// ones, through the v1 controller and through the v2 BPF program alike.
    #[test]
    fn the_device_cgroup_denies_other_devices_on_both_versions() {
        assert!(super::super::sys::is_root(), "this test needs root");
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, major: u32, minor: u32| {
            let path = dir.path().join(name);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o600),
                rustix::fs::makedev(major, minor),
            )
            .unwrap();
            path
        };
        let null = make("null", 1, 3);
        let mem = make("mem", 1, 1);
        for mechanism in ["v1", "v2"] {
            assert_eq!(
                open_confined(mechanism, &null).trim(),
                "open-ok",
                "{mechanism}"
            );
            let denied = open_confined(mechanism, &mem);
            assert!(
                denied.contains("Operation not permitted") && !denied.contains("open-ok"),
                "{mechanism}: {denied}"
            );
        }
    }
}
