//! RUN steps of a foreign platform under QEMU user emulation, inside rbuild's real sandbox
//! (namespaces, Docker's default capabilities, the seccomp profile, no_new_privs, the device
//! and pids cgroups): the arm64 busybox of the shared multi-platform fixture runs through the
//! executor API with the rbuild binary as helper, as a build's RUN would. The kernel hands the
//! arm64 binary to the binfmt_misc handler (its F flag opened the emulator at registration, so
//! the sandbox's mount namespace and root need not contain it).
//!
//! `rbuild run` has no `--platform` and `rbuild load` keeps only the host's image of an index,
//! so the arm64 root filesystem is laid from the fixture's layer directly.
//!
//! A host without the emulator fails these tests with a message saying how to register it
//! (`support::require_run_platform`); they never skip.

use std::path::PathBuf;

use crate::support::exec::{Fixture, run_sh};
use crate::support::oci::OciArchive;
use crate::support::{busybox_multi_archive, require_run_platform};
use rbuild_executor::{Backend, RunSupport};
use rbuild_store::Limits;
use rbuild_store::layer::{UnpackMode, UnpackOptions};

/// The arm64 busybox of the shared multi-platform fixture as a snapshot of `fx`.
fn arm64_busybox(fx: &Fixture) -> PathBuf {
    let archive = OciArchive::open(&busybox_multi_archive()).unwrap();
    let manifest = archive.image_for("linux/arm64").unwrap();
    let config = archive.config(&manifest.config).unwrap();
    assert_eq!(config.architecture, "arm64", "the fixture's arm64 image");
    assert_eq!(manifest.layers.len(), 1, "the fixture has one layer");
    let layer = archive.layer(&manifest.layers[0]).unwrap();
    fx.exec
        .snapshots()
        .ensure(&format!("sha256:{}", "a".repeat(64)), |dir| {
            let opts = UnpackOptions::new(UnpackMode::OverlayLower);
            rbuild_store::layer::unpack(layer, dir, &opts, &Limits::default(), "arm64 busybox")
                .unwrap();
            Ok(())
        })
        .unwrap()
}

/// arm64 programs run under the registered emulator: `uname -m` says aarch64, the shell,
/// pipes, subshells, `/proc/self/exe`, files written into the layer and child processes work,
/// and the step's changes are captured like a native step's.
#[test]
fn arm64_run_step_executes_under_emulation_in_the_sandbox() {
    let support = require_run_platform("linux/arm64");
    if let RunSupport::Emulated(handler) = &support {
        assert!(handler.flags.contains('F'), "{handler:?}");
    }
    for backend in [Backend::Overlay, Backend::Copy] {
        let fx = Fixture::new(backend);
        let base = arm64_busybox(&fx);
        let ran = run_sh(
            &fx.exec,
            &[base],
            "uname -m; od -An -tx1 -j18 -N2 /bin/busybox | tr -d ' '; \
             echo $((6 * 7)) | cat; (cd /tmp && pwd); \
             uname -m > /arch && sleep 0 && ls /proc/self/exe >/dev/null && id -u; \
             wc -l < /etc/passwd; \
             grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status | tr -s '\\t' ' '",
            |_| {},
        );
        let outcome = ran.outcome();
        assert!(
            outcome.status.success(),
            "{backend:?}: the arm64 step failed: {:?}\nstdout: {:?}\nstderr: {:?}",
            outcome.status,
            ran.stdout,
            ran.stderr
        );
        assert_eq!(
            ran.stdout,
            [
                "aarch64",
                "b700",
                "42",
                "/tmp",
                "0",
                "2",
                // Confined as every step is: Docker's default capabilities and the seccomp
                // filter, without no_new_privs (as Docker; see executor/src/sandbox/seccomp.rs).
                "CapEff: 00000000a80425fb",
                "NoNewPrivs: 0",
                "Seccomp: 2",
            ],
            "{backend:?}: stderr {:?}",
            ran.stderr
        );
        let mut layer = Vec::new();
        let info = outcome
            .rootfs
            .write_layer(&mut layer, &rbuild_executor::LayerOptions::default())
            .unwrap();
        assert!(info.is_some(), "{backend:?}: the step wrote /arch");
        let mut archive = tar::Archive::new(layer.as_slice());
        let mut arch = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                == "arch"
            {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
                arch = Some(s);
            }
        }
        assert_eq!(arch.as_deref(), Some("aarch64\n"), "{backend:?}");
    }
}

/// A failing arm64 command's exit code and a signal death come through the emulator as they
/// would natively.
#[test]
fn arm64_exit_codes_and_signals_pass_through_the_emulator() {
    require_run_platform("linux/arm64");
    let fx = Fixture::new(Backend::Overlay);
    let base = arm64_busybox(&fx);
    let ran = run_sh(&fx.exec, std::slice::from_ref(&base), "exit 7", |_| {});
    assert_eq!(ran.outcome().status.code(), 7, "{:?}", ran.stderr);
    let ran = run_sh(&fx.exec, &[base], "kill -TERM $$", |_| {});
    let status = &ran.outcome().status;
    assert_eq!(status.code(), 128 + 15, "{status:?} {:?}", ran.stderr);
}

/// On this host, linux/arm64 runs, and so does the host's own platform natively.
#[test]
fn the_emulation_check_sees_this_hosts_handler() {
    let host = rbuild_store::Platform::host();
    assert_eq!(
        rbuild_executor::check_run_platform(&host).unwrap(),
        RunSupport::Native
    );
    let support = require_run_platform("linux/arm64");
    if host.architecture != "arm64" {
        assert!(matches!(support, RunSupport::Emulated(_)), "{support:?}");
    }
}
