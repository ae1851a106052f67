//! Can this host run a platform's RUN steps? Natively, or through a QEMU user-mode emulator
//! registered with the kernel's binfmt_misc.
//!
//! This module owns that one question, asked before a build runs any step for a platform that is
//! not the host's ([`check_run_platform`]), and the error that says how to make the answer yes
//! ([`EmulationError`]). It runs nothing itself: a foreign binary started in the sandbox is
//! handed to the emulator by the kernel, so the only thing to check is the kernel's handler
//! table.
//!
//! # Rules
//!
//! - **Native:** the host's own architecture (any variant of it: the CPU's feature level, e.g.
//!   amd64/v3, is not checked), and linux/386 on an amd64 host when the kernel runs 32-bit x86
//!   programs (`/proc/sys/abi/vsyscall32` exists, which only a kernel built with IA-32
//!   emulation has, and `ia32_emulation=` on the kernel command line, else the kernel's
//!   `CONFIG_IA32_EMULATION_DEFAULT_DISABLED` when `/boot/config-RELEASE` is readable, does
//!   not turn it off; the check reads these files and runs no 32-bit program).
//!   32-bit arm on an arm64 host is *not* taken as native: whether the CPU and kernel run
//!   AArch32 code cannot be told from a file, so it needs a handler like any foreign platform.
//! - **Emulated:** an enabled binfmt_misc handler (`/proc/sys/fs/binfmt_misc/*`, binfmt_misc
//!   itself mounted and enabled) of the magic kind whose magic and mask, at its offset, match
//!   the first 20 bytes of an ELF executable of that architecture: the identification bytes
//!   (`\x7fELF`, class, byte order, version) and `e_type` (both `ET_EXEC` and `ET_DYN`, as
//!   static-pie binaries are) then `e_machine`, as the kernel compares them. The handler needs
//!   the **F** flag: the kernel then opened the interpreter when the handler was registered, so
//!   it is found from inside the sandbox's mount namespace and root; without F the kernel
//!   looks the interpreter's path up inside the build's root filesystem, where it is not, and
//!   the step fails with a confusing "no such file". That case has its own error.
//! - Architectures with known ELF headers: amd64, 386, arm64, arm (any variant: one ELF
//!   machine), ppc64le, s390x, riscv64, mips64le, loong64; any other platform, or an OS other
//!   than linux, is refused as unsupported.
//!
//! # Why hand-written
//!
//! The check is a few dozen lines over a stable kernel text format (`enabled`, `interpreter`,
//! `flags:`, `offset`, `magic`, `mask`, one per line, hex without separators) and the ELF
//! header layout; no crate parses binfmt_misc entries, and the error must say rbuild's own
//! remedy. The directory is a parameter of [`check_in`] so unit tests use fake entries.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use rbuild_store::Platform;
use thiserror::Error;

/// Where the kernel's binfmt_misc handler table is mounted.
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// How RUN steps of a platform run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSupport {
    /// The host runs the platform's programs itself.
    Native,
    /// The kernel hands the platform's programs to this registered emulator.
    Emulated(Handler),
}

/// A binfmt_misc handler that runs a platform's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Its entry's name under `/proc/sys/fs/binfmt_misc` (e.g. `qemu-aarch64`).
    pub name: String,
    /// The interpreter path it was registered with.
    pub interpreter: PathBuf,
    /// Its flags as the kernel shows them (e.g. `POF`).
    pub flags: String,
}

/// Why RUN steps of a platform cannot run on this host.
#[derive(Debug, Error, Diagnostic)]
pub enum EmulationError {
    /// Neither the host nor any usable binfmt_misc handler runs the platform's programs.
    #[error("RUN steps for platform `{platform}` cannot run on this {host} host: {reason}")]
    #[diagnostic(code(rbuild::platform::no_emulator), help("{help}"))]
    NoEmulator {
        /// The platform asked for, `os/arch[/variant]`.
        platform: String,
        /// This host's platform.
        host: String,
        reason: String,
        help: String,
    },

    /// A matching handler is registered, but without the F flag.
    #[error(
        "RUN steps for platform `{platform}` cannot run in rbuild's sandbox: binfmt_misc handler \
         `{}` (interpreter `{}`) is registered without the F flag, so the kernel would look \
         for its interpreter inside the build's root filesystem",
        handler.name,
        handler.interpreter.display()
    )]
    #[diagnostic(code(rbuild::platform::emulator_without_fix_binary), help("{help}"))]
    NotFixBinary {
        platform: String,
        handler: Handler,
        help: String,
    },

    /// rbuild knows no way to run this platform's programs at all.
    #[error("RUN steps for platform `{platform}` cannot run: {reason}")]
    #[diagnostic(
        code(rbuild::platform::unsupported),
        help(
            "rbuild runs RUN steps for linux on amd64, 386, arm64, arm, ppc64le, s390x, riscv64, \
             mips64le and loong64 (foreign ones under QEMU); a stage without RUN builds for any \
             platform"
        )
    )]
    Unsupported { platform: String, reason: String },
}

impl EmulationError {
    /// Always the build's input (its `--platform`) meeting this host:
    /// [`ErrorClass::Input`](rbuild_store::ErrorClass).
    pub fn class(&self) -> rbuild_store::ErrorClass {
        rbuild_store::ErrorClass::Input
    }
}

/// Whether RUN steps for `platform` can run on this host, natively or under a registered
/// emulator (see the module doc for the rules). The engine asks this once per foreign platform
/// before a build runs any RUN step for it.
pub fn check_run_platform(platform: &Platform) -> Result<RunSupport, EmulationError> {
    let host = Host {
        platform: Platform::host(),
        runs_ia32: host_runs_ia32(),
    };
    check_in(platform, &host, Path::new(BINFMT_MISC_DIR))
}

/// What the host runs by itself.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The host's platform (normalised).
    pub platform: Platform,
    /// Whether the kernel runs 32-bit x86 programs (amd64 hosts only).
    pub runs_ia32: bool,
}

/// Whether an amd64 kernel runs 32-bit x86 programs: built with IA-32 emulation (only then it
/// has the `abi.vsyscall32` sysctl), and that emulation on: `ia32_emulation=` on the kernel
/// command line decides; without it, a kernel configured with
/// `CONFIG_IA32_EMULATION_DEFAULT_DISABLED=y` (when `/boot/config-RELEASE` says so) has it off.
fn host_runs_ia32() -> bool {
    if Platform::host().architecture != "amd64" || !Path::new("/proc/sys/abi/vsyscall32").exists() {
        return false;
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let config = std::fs::read_to_string(format!("/boot/config-{release}")).unwrap_or_default();
    ia32_enabled(&cmdline, &config)
}

/// `ia32_emulation=` (the last one, parsed as the kernel's `kstrtobool`: y/t/1/on true,
/// n/f/0/off false) else the kernel config's default.
fn ia32_enabled(cmdline: &str, kernel_config: &str) -> bool {
    let from_cmdline = cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("ia32_emulation="))
        .filter_map(|v| match v.to_ascii_lowercase().as_str() {
            "on" => Some(true),
            "off" => Some(false),
            v if v.starts_with(['y', 't', '1']) => Some(true),
            v if v.starts_with(['n', 'f', '0']) => Some(false),
            _ => None,
        })
        .next_back();
    from_cmdline.unwrap_or_else(|| {
        !kernel_config
            .lines()
            .any(|l| l.trim() == "CONFIG_IA32_EMULATION_DEFAULT_DISABLED=y")
    })
}

/// The rules of [`check_run_platform`] for a given host and binfmt_misc directory.
pub(crate) fn check_in(
    platform: &Platform,
    host: &Host,
    binfmt_dir: &Path,
) -> Result<RunSupport, EmulationError> {
    let want = platform.normalized();
    let host_platform = host.platform.normalized();
    if want.os != "linux" {
        return Err(EmulationError::Unsupported {
            platform: want.to_string(),
            reason: format!("rbuild runs only linux programs, not {}", want.os),
        });
    }
    let Some(arch) = Arch::of(&want.architecture) else {
        return Err(EmulationError::Unsupported {
            platform: want.to_string(),
            reason: format!(
                "no emulator is known for architecture `{}`",
                want.architecture
            ),
        });
    };
    if want.architecture == host_platform.architecture
        || (arch == Arch::I386 && host_platform.architecture == "amd64" && host.runs_ia32)
    {
        return Ok(RunSupport::Native);
    }

    let no_emulator = |reason: String, help: String| EmulationError::NoEmulator {
        platform: want.to_string(),
        host: host_platform.to_string(),
        reason,
        help,
    };
    let dir = binfmt_dir.display();
    let status = match std::fs::read_to_string(binfmt_dir.join("status")) {
        Ok(status) => status,
        Err(_) => {
            return Err(no_emulator(
                format!("binfmt_misc is not mounted at `{dir}`"),
                install_help(arch, binfmt_dir),
            ));
        }
    };
    if status.trim() != "enabled" {
        return Err(no_emulator(
            format!(
                "binfmt_misc is disabled (`{dir}/status` says `{}`)",
                status.trim()
            ),
            format!("enable it as root: `echo 1 > {dir}/status`"),
        ));
    }

    let mut entries: Vec<(String, Entry)> = std::fs::read_dir(binfmt_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name == "status" || name == "register" {
                        return None;
                    }
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    Some((name, Entry::parse(&text)?))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let matching: Vec<&(String, Entry)> = entries
        .iter()
        .filter(|(_, e)| arch.elf_headers().iter().all(|h| e.matches(h)))
        .collect();
    let handler = |(name, e): &(String, Entry)| Handler {
        name: name.clone(),
        interpreter: e.interpreter.clone(),
        flags: e.flags.clone(),
    };
    if let Some(found) = matching
        .iter()
        .find(|(_, e)| e.enabled && e.flags.contains('F'))
    {
        return Ok(RunSupport::Emulated(handler(found)));
    }
    if let Some(found) = matching.iter().find(|(_, e)| e.enabled) {
        let h = handler(found);
        let help = format!(
            "register it again with the F flag, as root: `echo -1 > {dir}/{name}` (removes \
             it), then `cat /usr/lib/binfmt.d/qemu-{q}.conf > {dir}/register` (Debian's \
             qemu-user-static file has flags OPF; the F must be in the last field of the \
             registration line)",
            name = h.name,
            q = arch.qemu_name(),
        );
        return Err(EmulationError::NotFixBinary {
            platform: want.to_string(),
            handler: h,
            help,
        });
    }
    if let Some((name, _)) = matching.first() {
        return Err(no_emulator(
            format!("binfmt_misc handler `{name}` matches its programs but is disabled"),
            format!(
                "enable it as root: `echo 1 > {dir}/{name}` (it must have the F flag, which \
                 Debian's qemu-user-static registration has)"
            ),
        ));
    }
    Err(no_emulator(
        format!(
            "no enabled binfmt_misc handler runs {} ELF programs (QEMU user emulation is not \
             registered)",
            arch.qemu_name()
        ),
        install_help(arch, binfmt_dir),
    ))
}

/// How to install and register QEMU's emulator for `arch`.
fn install_help(arch: Arch, binfmt_dir: &Path) -> String {
    let dir = binfmt_dir.display();
    let q = arch.qemu_name();
    format!(
        "install QEMU user emulation and register it with the kernel, as root: `apt-get install \
         qemu-user-static` (Debian; it ships /usr/lib/binfmt.d/qemu-{q}.conf), mount binfmt_misc \
         if it is not (`mount -t binfmt_misc binfmt_misc {dir}`), then `cat \
         /usr/lib/binfmt.d/qemu-{q}.conf > {dir}/register`; the handler needs the F flag \
         (Debian's file has it) so the emulator is found inside rbuild's sandbox"
    )
}

/// The architectures whose ELF headers are known here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Amd64,
    I386,
    Arm64,
    Arm,
    Ppc64le,
    S390x,
    Riscv64,
    Mips64le,
    Loong64,
}

/// ELF identification values (the ELF specification, `elf.h`).
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

impl Arch {
    /// A normalised GOARCH-style architecture name.
    fn of(architecture: &str) -> Option<Arch> {
        Some(match architecture {
            "amd64" => Arch::Amd64,
            "386" => Arch::I386,
            "arm64" => Arch::Arm64,
            "arm" => Arch::Arm,
            "ppc64le" => Arch::Ppc64le,
            "s390x" => Arch::S390x,
            "riscv64" => Arch::Riscv64,
            "mips64le" => Arch::Mips64le,
            "loong64" => Arch::Loong64,
            _ => return None,
        })
    }

    /// QEMU's name for it (its binfmt.d file is `qemu-<name>.conf`).
    fn qemu_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Arm64 => "aarch64",
            Arch::Arm => "arm",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
            Arch::Mips64le => "mips64el",
            Arch::Loong64 => "loongarch64",
        }
    }

    /// ELF class, byte order and `e_machine`.
    fn elf(self) -> (u8, u8, u16) {
        match self {
            Arch::Amd64 => (ELFCLASS64, ELFDATA2LSB, 62), // EM_X86_64
            Arch::I386 => (ELFCLASS32, ELFDATA2LSB, 3),   // EM_386
            Arch::Arm64 => (ELFCLASS64, ELFDATA2LSB, 183), // EM_AARCH64
            Arch::Arm => (ELFCLASS32, ELFDATA2LSB, 40),   // EM_ARM
            Arch::Ppc64le => (ELFCLASS64, ELFDATA2LSB, 21), // EM_PPC64
            Arch::S390x => (ELFCLASS64, ELFDATA2MSB, 22), // EM_S390
            Arch::Riscv64 => (ELFCLASS64, ELFDATA2LSB, 243), // EM_RISCV
            Arch::Mips64le => (ELFCLASS64, ELFDATA2LSB, 8), // EM_MIPS
            Arch::Loong64 => (ELFCLASS64, ELFDATA2LSB, 258), // EM_LOONGARCH
        }
    }

    /// The first 20 bytes of an executable of this architecture (`e_ident`, `e_type`,
    /// `e_machine`), for `ET_EXEC` and for `ET_DYN` (PIE and static-pie programs).
    fn elf_headers(self) -> [[u8; 20]; 2] {
        let (class, data, machine) = self.elf();
        let header = |e_type: u16| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(b"\x7fELF");
            h[4] = class;
            h[5] = data;
            h[6] = EV_CURRENT;
            // e_ident[7..16]: OS ABI, ABI version, padding: zero (handlers mask the OS ABI).
            let (t, m) = if data == ELFDATA2MSB {
                (e_type.to_be_bytes(), machine.to_be_bytes())
            } else {
                (e_type.to_le_bytes(), machine.to_le_bytes())
            };
            h[16..18].copy_from_slice(&t);
            h[18..20].copy_from_slice(&m);
            h
        };
        [header(ET_EXEC), header(ET_DYN)]
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

/// One binfmt_misc handler as `/proc/sys/fs/binfmt_misc/NAME` shows it (magic kind only;
/// extension handlers have no magic and are not parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    enabled: bool,
    interpreter: PathBuf,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    /// All ones when the handler was registered without a mask.
    mask: Vec<u8>,
}

impl Entry {
    /// Parse the kernel's text; `None` for an extension handler or anything unreadable.
    fn parse(text: &str) -> Option<Entry> {
        let mut lines = text.lines();
        let enabled = match lines.next()?.trim() {
            "enabled" => true,
            "disabled" => false,
            _ => return None,
        };
        let (mut interpreter, mut flags, mut offset, mut magic, mut mask) =
            (None, String::new(), 0, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.trim();
            match key {
                "interpreter" => interpreter = Some(PathBuf::from(value)),
                "flags:" => flags = value.to_string(),
                "offset" => offset = value.parse().ok()?,
                "magic" => magic = Some(hex::decode(value).ok()?),
                "mask" => mask = Some(hex::decode(value).ok()?),
                _ => {}
            }
        }
        let magic = magic?;
        let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
        if mask.len() != magic.len() || magic.is_empty() {
            return None;
        }
        Some(Entry {
            enabled,
            interpreter: interpreter?,
            flags,
            offset,
            magic,
            mask,
        })
    }

    /// Whether the kernel would give a file starting with `header` to this handler. Bytes the
    /// handler compares beyond the header are unknown, so they count as a mismatch unless
    /// masked out.
    fn matches(&self, header: &[u8]) -> bool {
        self.magic
            .iter()
            .zip(&self.mask)
            .enumerate()
            .all(|(i, (m, k))| match header.get(self.offset + i) {
                Some(b) => (b ^ m) & k == 0,
                None => *k == 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64_host() -> Host {
        Host {
            platform: Platform::new("linux", "amd64", None),
            runs_ia32: true,
        }
    }

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    /// Debian's qemu-user-static registration lines (magic, mask), as bytes.
    fn debian(arch: &str) -> (Vec<u8>, Vec<u8>) {
        let (magic, mask) = match arch {
            "aarch64" => (
                "7f454c460201010000000000000000000200b700",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            "arm" => (
                "7f454c4601010100000000000000000002002800",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            "ppc64le" => (
                "7f454c4602010100000000000000000002001500",
                "fffffffffffffffcfffffffffffffffffeffff00",
            ),
            "s390x" => (
                "7f454c4602020100000000000000000000020016",
                "fffffffffffffffcfffffffffffffffffffeffff",
            ),
            "riscv64" => (
                "7f454c460201010000000000000000000200f300",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            "mips64el" => (
                "7f454c4602010100000000000000000002000800",
                "ffffffffffffff00fefffffffffffffffeffffff",
            ),
            "loongarch64" => (
                "7f454c4602010100000000000000000002000201",
                "fffffffffffffffc00fffffffffffffffeffffff",
            ),
            other => panic!("no registration for {other}"),
        };
        (hex::decode(magic).unwrap(), hex::decode(mask).unwrap())
    }

    /// A fake binfmt_misc directory: `status` and entries `(name, text)`.
    fn fake(status: Option<&str>, entries: &[(&str, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(status) = status {
            std::fs::write(dir.path().join("status"), format!("{status}\n")).unwrap();
            std::fs::write(dir.path().join("register"), "").unwrap();
        }
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn entry(enabled: bool, flags: &str, magic: &[u8], mask: Option<&[u8]>) -> String {
        let mut s = format!(
            "{}\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: {flags}\noffset 0\nmagic {}\n",
            if enabled { "enabled" } else { "disabled" },
            hex::encode(magic)
        );
        if let Some(mask) = mask {
            s.push_str(&format!("mask {}\n", hex::encode(mask)));
        }
        s
    }

    fn aarch64_entry(enabled: bool, flags: &str) -> String {
        let (magic, mask) = debian("aarch64");
        entry(enabled, flags, &magic, Some(&mask))
    }

    #[test]
    fn the_host_architecture_is_native() {
        let none = Path::new("/nonexistent/binfmt");
        for s in ["linux/amd64", "linux/amd64/v3", "amd64"] {
            assert_eq!(
                check_in(&p(s), &amd64_host(), none).unwrap(),
                RunSupport::Native
            );
        }
        let arm64 = Host {
            platform: Platform::new("linux", "arm64", None),
            runs_ia32: false,
        };
        assert_eq!(
            check_in(&p("linux/arm64/v8"), &arm64, none).unwrap(),
            RunSupport::Native
        );
        // 32-bit arm on arm64 is not assumed: it needs a handler.
        assert!(matches!(
            check_in(&p("linux/arm/v7"), &arm64, none),
            Err(EmulationError::NoEmulator { .. })
        ));
    }

    #[test]
    fn i386_is_native_only_where_the_kernel_runs_it() {
        let none = Path::new("/nonexistent/binfmt");
        assert_eq!(
            check_in(&p("linux/386"), &amd64_host(), none).unwrap(),
            RunSupport::Native
        );
        let no_ia32 = Host {
            runs_ia32: false,
            ..amd64_host()
        };
        assert!(check_in(&p("linux/386"), &no_ia32, none).is_err());
        // With a qemu-i386 handler it runs emulated.
        let mut magic = Arch::I386.elf_headers()[0].to_vec();
        let mut mask = vec![0xff; 20];
        mask[7] = 0;
        mask[16] = 0xfe;
        magic[7] = 0;
        let dir = fake(
            Some("enabled"),
            &[("qemu-i386", entry(true, "POF", &magic, Some(&mask)))],
        );
        assert!(matches!(
            check_in(&p("linux/386"), &no_ia32, dir.path()).unwrap(),
            RunSupport::Emulated(h) if h.name == "qemu-i386"
        ));
    }

    #[test]
    fn ia32_emulation_follows_the_command_line_then_the_kernel_config() {
        let off_by_default = "CONFIG_IA32_EMULATION=y\nCONFIG_IA32_EMULATION_DEFAULT_DISABLED=y\n";
        assert!(ia32_enabled("quiet", ""));
        assert!(ia32_enabled("quiet", "CONFIG_IA32_EMULATION=y\n"));
        assert!(!ia32_enabled("quiet", off_by_default));
        assert!(ia32_enabled("ia32_emulation=true", off_by_default));
        assert!(ia32_enabled("ia32_emulation=1", off_by_default));
        for off in ["0", "n", "no", "off", "false", "F"] {
            assert!(
                !ia32_enabled(&format!("ro ia32_emulation={off}"), ""),
                "{off}"
            );
        }
        assert!(ia32_enabled("ia32_emulation=0 ia32_emulation=on", ""));
    }

    #[test]
    fn a_matching_enabled_handler_with_f_runs_the_platform() {
        let dir = fake(
            Some("enabled"),
            &[
                (
                    "python3.11",
                    "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n"
                        .to_string(),
                ),
                ("qemu-aarch64", aarch64_entry(true, "POF")),
            ],
        );
        let got = check_in(&p("linux/arm64"), &amd64_host(), dir.path()).unwrap();
        assert_eq!(
            got,
            RunSupport::Emulated(Handler {
                name: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/x-binfmt-P".into(),
                flags: "POF".into(),
            })
        );
        // The same handler does not run arm (32-bit) programs.
        let err = check_in(&p("linux/arm/v7"), &amd64_host(), dir.path()).unwrap_err();
        assert!(matches!(err, EmulationError::NoEmulator { .. }), "{err}");
        assert!(err.to_string().contains("linux/arm/v7"), "{err}");
    }

    #[test]
    fn debian_registrations_match_their_architecture_only() {
        let arches = [
            ("aarch64", Arch::Arm64),
            ("arm", Arch::Arm),
            ("ppc64le", Arch::Ppc64le),
            ("s390x", Arch::S390x),
            ("riscv64", Arch::Riscv64),
            ("mips64el", Arch::Mips64le),
            ("loongarch64", Arch::Loong64),
        ];
        let all = [
            Arch::Amd64,
            Arch::I386,
            Arch::Arm64,
            Arch::Arm,
            Arch::Ppc64le,
            Arch::S390x,
            Arch::Riscv64,
            Arch::Mips64le,
            Arch::Loong64,
        ];
        for (name, arch) in arches {
            assert_eq!(arch.qemu_name(), name);
            let (magic, mask) = debian(name);
            let e = Entry::parse(&entry(true, "OPF", &magic, Some(&mask))).unwrap();
            for other in all {
                let hit = other.elf_headers().iter().all(|h| e.matches(h));
                assert_eq!(hit, other == arch, "{name} handler on {other} headers");
            }
        }
    }

    #[test]
    fn a_handler_without_f_has_its_own_error() {
        let dir = fake(
            Some("enabled"),
            &[("qemu-aarch64", aarch64_entry(true, "P"))],
        );
        let err = check_in(&p("linux/arm64"), &amd64_host(), dir.path()).unwrap_err();
        assert!(matches!(err, EmulationError::NotFixBinary { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("without the F flag") && text.contains("qemu-aarch64"),
            "{text}"
        );
        let help = err.help().unwrap().to_string();
        assert!(
            help.contains("/usr/lib/binfmt.d/qemu-aarch64.conf"),
            "{help}"
        );
        assert_eq!(
            err.code().unwrap().to_string(),
            "rbuild::platform::emulator_without_fix_binary"
        );
    }

    #[test]
    fn a_disabled_handler_is_not_used() {
        let dir = fake(
            Some("enabled"),
            &[("qemu-aarch64", aarch64_entry(false, "POF"))],
        );
        let err = check_in(&p("linux/arm64"), &amd64_host(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("is disabled"), "{err}");
        assert!(
            err.help().unwrap().to_string().contains("echo 1 >"),
            "{err:?}"
        );
        // binfmt_misc itself disabled.
        let dir = fake(
            Some("disabled"),
            &[("qemu-aarch64", aarch64_entry(true, "POF"))],
        );
        let err = check_in(&p("linux/arm64"), &amd64_host(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("binfmt_misc is disabled"), "{err}");
    }

    #[test]
    fn a_handler_whose_mask_does_not_fit_is_not_used() {
        let (magic, mut mask) = debian("aarch64");
        // Compare e_machine's high byte against the wrong value: no aarch64 file matches.
        let mut wrong = magic.clone();
        wrong[19] = 0x01;
        let dir = fake(
            Some("enabled"),
            &[("qemu-aarch64", entry(true, "POF", &wrong, Some(&mask)))],
        );
        let err = check_in(&p("linux/arm64"), &amd64_host(), dir.path()).unwrap_err();
        assert!(matches!(err, EmulationError::NoEmulator { .. }), "{err}");
        // A mask that compares e_type exactly matches only ET_EXEC, not static-pie (ET_DYN).
        mask[16] = 0xff;
        let dir = fake(
            Some("enabled"),
            &[("qemu-aarch64", entry(true, "POF", &magic, Some(&mask)))],
        );
        assert!(check_in(&p("linux/arm64"), &amd64_host(), dir.path()).is_err());
        // No mask at all means every byte is compared, and a magic past the header can't be
        // known to match.
        let long = [magic.clone(), vec![0x00]].concat();
        let dir = fake(
            Some("enabled"),
            &[("qemu-aarch64", entry(true, "POF", &long, None))],
        );
        assert!(check_in(&p("linux/arm64"), &amd64_host(), dir.path()).is_err());
    }

    #[test]
    fn binfmt_misc_not_mounted_says_how_to_mount_and_register() {
        let dir = fake(None, &[]);
        let err = check_in(&p("linux/arm64"), &amd64_host(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("not mounted"), "{err}");
        assert_eq!(
            err.code().unwrap().to_string(),
            "rbuild::platform::no_emulator"
        );
        let help = err.help().unwrap().to_string();
        for part in [
            "apt-get install qemu-user-static",
            "mount -t binfmt_misc binfmt_misc",
            "cat /usr/lib/binfmt.d/qemu-aarch64.conf >",
            "/register",
            "F flag",
        ] {
            assert!(help.contains(part), "{part:?} not in {help}");
        }
        // Mounted but nothing registered: the same remedy.
        let dir = fake(Some("enabled"), &[]);
        let err = check_in(&p("linux/riscv64"), &amd64_host(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("riscv64"), "{err}");
        assert!(
            err.help()
                .unwrap()
                .to_string()
                .contains("qemu-riscv64.conf")
        );
    }

    #[test]
    fn unknown_platforms_are_unsupported() {
        let none = Path::new("/nonexistent/binfmt");
        for s in ["windows/amd64", "linux/sparc64"] {
            let err = check_in(&p(s), &amd64_host(), none).unwrap_err();
            assert!(
                matches!(err, EmulationError::Unsupported { .. }),
                "{s}: {err}"
            );
            assert_eq!(
                err.code().unwrap().to_string(),
                "rbuild::platform::unsupported"
            );
        }
    }

    #[test]
    fn entries_parse_as_the_kernel_writes_them() {
        let e = Entry::parse(
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        assert!(e.enabled);
        assert_eq!(e.flags, "POF");
        assert_eq!(e.magic.len(), 20);
        assert!(
            Entry::parse("enabled\ninterpreter /usr/bin/wine\nflags: \nextension .exe\n").is_none()
        );
        assert!(Entry::parse("garbage").is_none());
    }

    /// On this machine: the host platform is always runnable.
    #[test]
    fn the_host_platform_runs_here() {
        assert_eq!(
            check_run_platform(&Platform::host()).unwrap(),
            RunSupport::Native
        );
    }
}
