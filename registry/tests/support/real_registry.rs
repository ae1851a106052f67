//! Starts Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with a temporary storage
//! directory and optional htpasswd auth; stops it on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RealRegistry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RealRegistry {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With `Some((user, password))`, the registry demands Basic auth (htpasswd, bcrypt).
    pub fn start_with(basic: Option<(&str, &str)>) -> Self {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "docker-registry is not installed (apt-get install docker-registry)"
        );
        let dir = tempfile::Builder::new()
            .prefix("rbuild-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = basic {
            let hash = bcrypt::hash(password, 4).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reg = RealRegistry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Copy the shared busybox OCI archive into `repo:tag` with skopeo.
    pub fn seed_busybox(&self, repo_tag: &str, creds: Option<&str>) {
        self.seed(&busybox_archive(), repo_tag, creds, false);
    }

    /// Copy the shared two-platform busybox archive (linux/amd64 + linux/arm64) into
    /// `repo:tag` with `skopeo copy --all`: the index and both images.
    pub fn seed_busybox_multi(&self, repo_tag: &str) {
        self.seed(
            &shared_image("busybox-1.35-multi.oci.tar"),
            repo_tag,
            None,
            true,
        );
    }

    fn seed(&self, archive: &Path, repo_tag: &str, creds: Option<&str>, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        if let Some(c) = creds {
            cmd.arg("--dest-creds").arg(c);
        }
        let out = cmd
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `../shared/images/busybox-1.35.oci.tar` (or `$RBUILD_SHARED/images/...`).
pub fn busybox_archive() -> PathBuf {
    shared_image("busybox-1.35.oci.tar")
}

/// `../shared/images/NAME` (or `$RBUILD_SHARED/images/NAME`); missing is a failure.
pub fn shared_image(name: &str) -> PathBuf {
    let shared = std::env::var_os("RBUILD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let p = shared.join("images").join(name);
    assert!(p.is_file(), "missing shared test image {}", p.display());
    p
}
