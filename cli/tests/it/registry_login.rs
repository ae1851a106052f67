//! `rbuild login` / `logout` against a real registry with htpasswd auth: credentials are
//! checked, stored in docker's config.json (or a credential helper) and never printed.

use std::os::unix::fs::PermissionsExt;

use crate::support::real_registry::RealRegistry;
use crate::support::{TestEnv, text};

fn config_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// Login checks the password with the registry, writes an `auths` entry (mode 0600) and
/// logout removes it.
#[test]
fn login_stores_credentials_and_logout_removes_them() {
    let reg = RealRegistry::start_with(Some(("alice", "s3cret")));
    let env = TestEnv::new();
    let docker = tempfile::tempdir().unwrap();
    // No config.json yet (a fresh CI runner): the registry's 401 and the login hint show.
    let out = env
        .rbuild()
        .env("DOCKER_CONFIG", docker.path())
        .args(["pull", &format!("{}/private/app:1", reg.host())])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("rbuild login"), "{stderr}");
    assert!(!stderr.contains("unable to read config"), "{stderr}");
    let out = env
        .rbuild()
        .env("DOCKER_CONFIG", docker.path())
        .args(["login", &reg.host(), "-u", "alice", "--password-stdin"])
        .write_stdin("s3cret\n")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Login Succeeded"));
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    let cfg = config_json(docker.path());
    assert_eq!(cfg["auths"][reg.host()]["auth"], "YWxpY2U6czNjcmV0"); // alice:s3cret
    let mode = std::fs::metadata(docker.path().join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = env
        .rbuild()
        .env("DOCKER_CONFIG", docker.path())
        .args(["logout", &reg.host()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        config_json(docker.path())["auths"]
            .get(reg.host())
            .is_none()
    );
}

/// A wrong password is refused by the registry: exit code 3, nothing stored, no secret echoed.
#[test]
fn login_with_wrong_password_fails() {
    let reg = RealRegistry::start_with(Some(("alice", "s3cret")));
    let env = TestEnv::new();
    let docker = tempfile::tempdir().unwrap();
    let out = env
        .rbuild()
        .env("DOCKER_CONFIG", docker.path())
        .args(["login", &reg.host(), "-u", "alice", "--password-stdin"])
        .write_stdin("wrong-password-123")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(!stderr.contains("wrong-password-123") && !stdout.contains("wrong-password-123"));
    assert!(!docker.path().join("config.json").exists());
}

/// With `credsStore` configured, login hands the secret to the helper's `store` and leaves
/// only an empty `auths` entry; logout calls `erase`.
#[test]
fn login_uses_the_configured_credential_helper() {
    let reg = RealRegistry::start_with(Some(("alice", "s3cret")));
    let env = TestEnv::new();
    let docker = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let vault = bin.path().join("vault");
    let helper = bin.path().join("docker-credential-rbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n store) cat > {v} ;;\n erase) cat > {v}.erased ;;\n get) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            v = vault.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        r#"{"credsStore":"rbtest","other":1}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .rbuild()
        .env("DOCKER_CONFIG", docker.path())
        .env("PATH", &path)
        .args(["login", &reg.host(), "-u", "alice", "--password-stdin"])
        .write_stdin("s3cret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vault).unwrap()).unwrap();
    assert_eq!(stored["Username"], "alice");
    assert_eq!(stored["Secret"], "s3cret");
    assert_eq!(stored["ServerURL"], reg.host());
    let cfg = config_json(docker.path());
    assert_eq!(cfg["auths"][reg.host()], serde_json::json!({}));
    assert_eq!(cfg["other"], 1, "unrelated settings are kept");
    let out = env
        .rbuild()
        .env("DOCKER_CONFIG", docker.path())
        .env("PATH", &path)
        .args(["logout", &reg.host()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        std::fs::read_to_string(vault.with_extension("erased")).unwrap(),
        reg.host()
    );
}
