//! The everyday commands a new user types first: an unknown word in command position, the
//! bare build form beside directories named like commands, `version` and `info`.

use std::path::Path;

use serde_json::Value;

use crate::support::{TestEnv, load_busybox, rbuild, run_ok, text, tool, write_file};

/// `rbuild WORD` run in `dir` (the bare form reads WORD relative to the working directory).
fn in_dir(env: &TestEnv, dir: &Path, args: &[&str]) -> std::process::Output {
    env.rbuild().current_dir(dir).args(args).output().unwrap()
}

#[test]
fn a_typo_in_command_position_is_a_usage_error_with_a_suggestion() {
    let env = TestEnv::new();
    let cwd = tempfile::tempdir().unwrap();
    let out = in_dir(&env, cwd.path(), &["imgaes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("unrecognized subcommand 'imgaes'"),
        "{stderr}"
    );
    assert!(stderr.contains("'images'"), "{stderr}");
    assert!(!stderr.contains("build context"), "{stderr}");
}

#[test]
fn a_docker_command_rbuild_lacks_is_named_as_such() {
    let env = TestEnv::new();
    let cwd = tempfile::tempdir().unwrap();
    for word in ["ps", "logs"] {
        let help = rbuild().arg("--help").output().unwrap();
        if text(&help)
            .0
            .lines()
            .any(|l| l.trim_start().starts_with(word))
        {
            continue; // rbuild has the command now: it is not an unknown word any more
        }
        let out = in_dir(&env, cwd.path(), &[word]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "'{word}' is a docker command that rbuild does not have"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("similar subcommand"), "{stderr}");
    }
}

/// A command's name wins over a directory of that name: `rbuild version` beside `version/`.
#[test]
fn a_command_name_beside_a_directory_runs_the_command() {
    let env = TestEnv::new();
    let cwd = tempfile::tempdir().unwrap();
    write_file(cwd.path(), "version/Dockerfile", "FROM scratch\n");
    let out = in_dir(&env, cwd.path(), &["version"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("Store format:"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    // Spelled as a path it is the build context.
    let out = in_dir(&env, cwd.path(), &["./version"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

/// A directory named like a typo of a command is built, with a warning naming the command.
#[test]
fn a_directory_named_like_a_command_is_built_with_a_warning() {
    let env = TestEnv::new();
    let cwd = tempfile::tempdir().unwrap();
    write_file(
        cwd.path(),
        "imgaes/Dockerfile",
        "FROM scratch\nLABEL from=imgaes\n",
    );
    let out = in_dir(&env, cwd.path(), &["imgaes", "-t", "typo:1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: building the directory `imgaes`")
            && stderr.contains("did you mean `rbuild images`?")
            && stderr.contains("`rbuild ./imgaes`"),
        "{stderr}"
    );
    let labels =
        stdout_of(
            env.rbuild()
                .args(["inspect", "typo:1", "--format", "{{json .Config.Labels}}"]),
        );
    assert_eq!(labels.trim(), r#"{"from":"imgaes"}"#);
    // The unambiguous spellings build it without the warning.
    let out = in_dir(&env, cwd.path(), &["./imgaes"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("warning: building the directory"),
        "{stderr}"
    );
}

#[test]
fn help_documents_the_bare_form() {
    let out = rbuild().arg("--help").output().unwrap();
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("The bare form:") && stdout.contains("`rbuild ./DIR`"),
        "{stdout}"
    );
    for cmd in ["version", "info"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{stdout}"
        );
    }
}

/// The stdout of a command that must succeed.
fn stdout_of(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{cmd:?}: {stderr}");
    stdout
}

fn json_of(cmd: &mut assert_cmd::Command) -> Value {
    let stdout = stdout_of(cmd);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn version_names_the_build_and_the_formats() {
    let v = json_of(rbuild().args(["version", "--format", "json"]));
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["StoreFormat"], rbuild_store::layout::FORMAT_VERSION);
    assert_eq!(v["OciImageSpec"], "1.1.0");
    assert_eq!(v["Platform"], rbuild_store::Platform::host().to_string());
    assert_eq!(v["Snapshotters"], serde_json::json!(["overlay", "copy"]));
    // The commit the binary was built from: this checkout's HEAD.
    let head = run_ok(tool("git").arg("-C").arg(env!("CARGO_MANIFEST_DIR")).args([
        "rev-parse",
        "--short=12",
        "HEAD",
    ]));
    assert_eq!(v["GitCommit"], head.trim());
    let rustc = run_ok(tool("rustc").arg("--version"));
    assert_eq!(v["RustVersion"], rustc.trim());
    // The human form and a template say the same.
    let human = stdout_of(rbuild().arg("version"));
    assert!(
        human.contains(&format!(" Git commit:       {}\n", head.trim())),
        "{human}"
    );
    let templ = stdout_of(rbuild().args(["version", "--format", "{{.StoreFormat}}"]));
    assert_eq!(
        templ.trim(),
        rbuild_store::layout::FORMAT_VERSION.to_string()
    );
}

#[test]
fn info_describes_this_store_and_host() {
    let env = TestEnv::new();
    load_busybox(&env);
    write_file(env.root(), "registries.toml", "[network]\nretries = 2\n");
    let v = json_of(env.rbuild().args(["info", "--format", "json"]));
    let store = &v["Store"];
    assert_eq!(store["Root"], env.root().display().to_string());
    assert_eq!(store["Images"], 1);
    assert_eq!(store["Containers"], 0);
    assert_eq!(store["Format"], rbuild_store::layout::FORMAT_VERSION);
    // At least the busybox archive's blobs are on disk.
    let archive = std::fs::metadata(crate::support::busybox_archive())
        .unwrap()
        .len();
    let size = store["Size"].as_u64().unwrap();
    assert!(size > archive / 2, "{size} vs archive {archive}");
    assert_eq!(
        v["RegistriesConfig"],
        env.root().join("registries.toml").display().to_string()
    );
    assert_eq!(v["Rootless"], !rustix::process::geteuid().is_root());
    let cgroup = &v["Cgroup"];
    if let Some(path) = cgroup["Path"].as_str() {
        assert!(Path::new(path).starts_with("/sys/fs/cgroup"), "{path}");
        assert!(
            matches!(cgroup["Version"].as_u64(), Some(1 | 2)),
            "{cgroup}"
        );
    }
    // Each platform as the build's own check answers it.
    let platforms = v["Platforms"].as_array().unwrap();
    for p in platforms {
        let name = p["Platform"].as_str().unwrap();
        let want = match rbuild_executor::check_run_platform(&name.parse().unwrap()) {
            Ok(rbuild_executor::RunSupport::Native) => "native",
            Ok(rbuild_executor::RunSupport::Emulated(_)) => "emulated",
            Err(_) => "no",
        };
        assert_eq!(p["Support"], want, "{name}");
    }
    let host = rbuild_store::Platform::host().to_string();
    assert!(
        platforms
            .iter()
            .any(|p| p["Platform"] == host.as_str() && p["Support"] == "native"),
        "{platforms:?}"
    );
    // The human form.
    let human = stdout_of(env.rbuild().arg("info"));
    assert!(human.contains(" Images:            1\n"), "{human}");
    assert!(
        human.contains(&format!("{host}:")) && human.contains("Registries config:"),
        "{human}"
    );
}
