//! The everyday commands a new user types first: an unknown word in command position, the
//! bare build form beside directories named like commands, `version` and `info`.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    TestEnv, busybox_archive, load_busybox, rbuild, run_ok, text, tool, write_file,
};

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
    let help = text(&rbuild().arg("--help").output().unwrap()).0;
    let has = |word: &str| {
        help.lines()
            .any(|l| l.split_whitespace().next() == Some(word))
    };
    // `buildx` stays docker's; `ps` and `logs` only until rbuild has them.
    assert!(!has("buildx"));
    for word in ["buildx", "ps", "logs"] {
        if has(word) {
            continue;
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
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(cmd)),
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

/// The shared busybox archive (its layer gzipped, as a registry serves it) with its layer
/// stored uncompressed, as a docker-archive holds it: the same config (so the same image ID),
/// a new manifest naming the plain tar, whose digest is its diff_id.
fn uncompressed_busybox(dir: &Path) -> std::path::PathBuf {
    use std::io::Read;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(busybox_archive()).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.push((name, data));
    }
    let get = |files: &[(String, Vec<u8>)], name: &str| {
        files.iter().find(|(n, _)| n == name).unwrap().1.clone()
    };
    let blob_name = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let mut index: Value = serde_json::from_slice(&get(&files, "index.json")).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&get(&files, &blob_name(&manifest_digest))).unwrap();
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let fixture = crate::support::oci::OciArchive::open(&busybox_archive()).unwrap();
    let layer = fixture.images(None).unwrap().remove(0).1.layers[0].clone();
    assert_eq!(layer.digest.to_string(), layer_digest);
    let mut tar_bytes = Vec::new();
    fixture
        .layer(&layer)
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let tar_digest = rbuild_store::Digest::of(&tar_bytes).to_string();
    manifest["layers"][0] = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": tar_digest,
        "size": tar_bytes.len(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let new_manifest = rbuild_store::Digest::of(&manifest_bytes).to_string();
    index["manifests"][0]["digest"] = new_manifest.clone().into();
    index["manifests"][0]["size"] = manifest_bytes.len().into();
    files.retain(|(n, _)| {
        n != "index.json" && *n != blob_name(&layer_digest) && *n != blob_name(&manifest_digest)
    });
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    files.push((blob_name(&new_manifest), manifest_bytes));
    files.push((blob_name(&tar_digest), tar_bytes));

    let path = dir.join("busybox-plain.oci.tar");
    let mut out = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (name, data) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        out.append_data(&mut h, name, &data[..]).unwrap();
    }
    out.finish().unwrap();
    path
}

/// Bytes of each layer of `platform`'s image in a fixture (`None`: its one image),
/// uncompressed, plus its config.
fn content_of(archive: &Path, platform: Option<&str>) -> u64 {
    let fixture = crate::support::oci::OciArchive::open(archive).unwrap();
    let m = match platform {
        Some(p) => fixture.image_for(p).unwrap(),
        None => fixture.images(None).unwrap().remove(0).1,
    };
    fixture.content_size(&m).unwrap()
}

/// Docker's SIZE is the content uncompressed: the same image stored with a gzipped layer (as
/// a pull stores it) and with a plain one (a docker-archive load) has one size in `images`,
/// `inspect` and `system df`: the layer's tar plus the config.
#[test]
fn images_count_content_uncompressed_whatever_the_blobs() {
    let work = tempfile::tempdir().unwrap();
    let pulled = TestEnv::new();
    load_busybox(&pulled);
    let loaded = TestEnv::new();
    stdout_of(
        loaded
            .rbuild()
            .args(["load", "-i"])
            .arg(uncompressed_busybox(work.path())),
    );
    // The stores really hold the layer differently: gzipped in one, plain in the other.
    let blob_sizes = |env: &TestEnv| -> u64 {
        std::fs::read_dir(env.root().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    assert!(
        blob_sizes(&pulled) < blob_sizes(&loaded) * 3 / 4,
        "{} vs {}",
        blob_sizes(&pulled),
        blob_sizes(&loaded)
    );

    let id = |env: &TestEnv| stdout_of(env.rbuild().args(["images", "-q", "--no-trunc"]));
    assert_eq!(id(&pulled), id(&loaded), "the same image");
    let size = |env: &TestEnv| -> u64 {
        stdout_of(
            env.rbuild()
                .args(["inspect", "-f", "{{.Size}}", "busybox:1.35"]),
        )
        .trim()
        .parse()
        .unwrap()
    };
    let want = content_of(&busybox_archive(), None);
    assert_eq!(size(&pulled), want);
    assert_eq!(size(&loaded), want);

    let column = |env: &TestEnv| stdout_of(env.rbuild().args(["images", "--format", "{{.Size}}"]));
    assert_eq!(column(&pulled).trim(), rbuild_store::size::human(want));
    assert_eq!(column(&loaded), column(&pulled));
    let df = |env: &TestEnv| -> Value {
        let out = stdout_of(env.rbuild().args(["system", "df", "--format", "json"]));
        serde_json::from_str(out.lines().next().unwrap()).unwrap()
    };
    assert_eq!(df(&pulled)["Type"], "Images");
    assert_eq!(df(&pulled)["Size"], rbuild_store::size::human(want));
    assert_eq!(df(&loaded)["Size"], df(&pulled)["Size"]);
    // history: the layer's row is its tar's length, in both stores.
    let history = |env: &TestEnv| {
        stdout_of(env.rbuild().args([
            "history",
            "-H=false",
            "--format",
            "{{.Size}}",
            "busybox:1.35",
        ]))
    };
    let layer_bytes = want - {
        let fixture = crate::support::oci::OciArchive::open(&busybox_archive()).unwrap();
        fixture.images(None).unwrap()[0].1.config.size
    };
    assert!(
        history(&pulled)
            .lines()
            .any(|l| l == layer_bytes.to_string()),
        "{}",
        history(&pulled)
    );
    assert_eq!(history(&pulled), history(&loaded));
    // The gzipped layer's size was measured once and kept; the plain one needed no entry; the
    // stores stay consistent.
    let kept: Value =
        serde_json::from_slice(&std::fs::read(pulled.root().join("content-sizes.json")).unwrap())
            .unwrap();
    assert_eq!(kept.as_object().unwrap().len(), 1, "{kept}");
    assert_eq!(
        kept.as_object().unwrap().values().next().unwrap(),
        layer_bytes
    );
    assert!(!loaded.root().join("content-sizes.json").exists());
    crate::support::store::assert_fsck_ok(&pulled);
    crate::support::store::assert_fsck_ok(&loaded);
}

/// A multi-platform image's size is all its platforms' content; a layer it shares with another
/// image is counted once in `system df`.
#[test]
fn multi_platform_totals_and_shared_layers() {
    let env = TestEnv::new();
    load_busybox(&env);
    let multi = crate::support::busybox_multi_archive();
    stdout_of(env.rbuild().args(["load", "-i"]).arg(&multi));
    let (amd64, arm64) = (
        content_of(&multi, Some("linux/amd64")),
        content_of(&multi, Some("linux/arm64")),
    );
    let tree = stdout_of(
        env.rbuild()
            .args(["images", "--tree", "busybox:1.35-multi"]),
    );
    let human = rbuild_store::size::human;
    let row = |prefix: &str| {
        tree.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} row: {tree}"))
            .to_string()
    };
    assert!(
        row("busybox:1.35-multi").contains(&human(amd64 + arm64)),
        "{tree}"
    );
    assert!(row("├─ linux/amd64").contains(&human(amd64)), "{tree}");
    assert!(row("└─ linux/arm64").contains(&human(arm64)), "{tree}");
    // busybox:1.35 is the index's amd64 image: the total counts it once.
    let out = stdout_of(env.rbuild().args(["system", "df", "--format", "json"]));
    let images: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(images["TotalCount"], "2");
    assert_eq!(images["Size"], human(amd64 + arm64));
}

/// `inspect -f` takes docker's Go templates over the JSON `inspect` prints.
#[test]
fn inspect_format_takes_go_templates() {
    let env = TestEnv::new();
    load_busybox(&env);
    stdout_of(env.rbuild().args(["tag", "busybox:1.35", "me/app:v1"]));
    let doc: Value = {
        let out = stdout_of(env.rbuild().args(["inspect", "busybox:1.35"]));
        serde_json::from_str::<Value>(&out).unwrap()[0].clone()
    };
    let f = |template: &str| {
        stdout_of(
            env.rbuild()
                .args(["inspect", "-f", template, "busybox:1.35"]),
        )
    };
    let tags: Vec<&str> = doc["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags.len(), 2, "{doc}");
    assert_eq!(f("{{index .RepoTags 0}}"), format!("{}\n", tags[0]));
    assert_eq!(
        f("{{range .RepoTags}}{{.}} {{end}}"),
        format!("{} {} \n", tags[0], tags[1])
    );
    let config: Value = serde_json::from_str(&f("{{json .Config}}")).unwrap();
    assert_eq!(config, doc["Config"]);
    let env_list: Vec<&str> = doc["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(f("{{.Config.Env}}"), format!("[{}]\n", env_list.join(" ")));
    assert_eq!(
        f(r#"{{join .RepoTags ","}}"#),
        format!("{}\n", tags.join(","))
    );

    // A broken template: exit 1, a report quoting the template and pointing into it.
    for (template, pointed) in [
        ("{{.Id}} {{frob .Config}}", "frob"),
        ("{{.Id}} {{.Config", "{{.Config"),
    ] {
        let out = env
            .rbuild()
            .args(["inspect", "-f", template, "busybox:1.35"])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("rbuild::format::template") && stderr.contains(template),
            "{stderr}"
        );
        // The label's carets sit under the pointed text.
        let line = stderr.lines().find(|l| l.contains(template)).unwrap();
        let carets = stderr
            .lines()
            .skip_while(|l| !l.contains(template))
            .nth(1)
            .unwrap();
        let col = line.find(template).unwrap() + template.find(pointed).unwrap();
        assert_eq!(
            carets.get(col..col + 1),
            Some("^"),
            "{line}\n{carets}\n{stderr}"
        );
    }
}

/// `rbuild save img | head -c 10`: the reader goes away mid-archive. Not a store error: no
/// message, exit 141 (128 + SIGPIPE), as shells expect of a writer to a closed pipe.
#[test]
fn a_closed_stdout_pipe_is_exit_141_without_a_message() {
    use std::io::Read;
    let env = TestEnv::new();
    load_busybox(&env);
    // A real pipe: read ten bytes of the archive, then close the read end.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(env.root())
        .args(["save", "busybox:1.35"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // The same through a shell pipeline, as a user types it.
    let script = format!(
        "'{}' --root '{}' save busybox:1.35 | head -c 10 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_rbuild"),
        env.root().display()
    );
    let out = tool("bash").arg("-c").arg(&script).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(stdout.trim(), "141", "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // Printed output longer than the pipe's buffer (inspect of the image 300 times, about
    // 600 kB of JSON), cut by `head -n 1`: the same.
    let script = format!(
        "'{}' --root '{}' inspect $(printf 'busybox:1.35 %.0s' $(seq 300)) | head -n 1 \
         >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_rbuild"),
        env.root().display()
    );
    let out = tool("bash").arg("-c").arg(&script).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "141",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
