//! `rbuild inspect IMAGE...`: a docker-compatible JSON array (Id, RepoTags, RepoDigests,
//! Created, Author, Config, Architecture, Os, Size, RootFS, Metadata, in Docker's key order;
//! Size is the content size, layers uncompressed, as docker counts it),
//! or `--format '{{.Config.Cmd}}'` per image. A multi-platform image shows the host platform's
//! image (`--platform P`: that platform's) under the index's ID and names, as docker with the
//! containerd image store does. After docker's keys, `OCILayoutNames` lists the full names
//! the store's `index.json` gives the image (`org.opencontainers.image.ref.name`): the NAME of
//! `skopeo inspect oci:$ROOT:NAME` (`docker.io/library/hello:latest`, not `hello`).

use std::collections::BTreeMap;

use clap::Args;
use rbuild_store::{ImageRecord, Reference};
use serde::Serialize;
use serde_json::Value;

use super::storeutil::{open_store, parse_platform, pick_image, print_error, render_template};
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images: name[:tag], name@digest, or (short) ID.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,

    /// A template like `{{.Config.Cmd}}` or `{{json .Config}}`, applied to each image.
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,

    /// Show this platform's image of a multi-platform image (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: String,
    comment: String,
    created: String,
    docker_version: String,
    author: String,
    config: DockerConfig,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<String>,
    size: u64,
    #[serde(rename = "RootFS")]
    root_fs: RootFs,
    metadata: Metadata,
    /// rbuild's own: the image's names in the store's OCI layout (for `oci:$ROOT:NAME`).
    #[serde(rename = "OCILayoutNames")]
    oci_layout_names: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerConfig {
    hostname: String,
    domainname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    exposed_ports: Option<BTreeMap<String, Value>>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<rbuild_store::Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_escaped: Option<bool>,
    image: String,
    volumes: Option<BTreeMap<String, Value>>,
    working_dir: String,
    entrypoint: Option<Vec<String>>,
    on_build: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shell: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RootFs {
    #[serde(rename = "Type")]
    kind: String,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    last_tag_time: String,
}

fn extra_str(img: &ImageRecord, key: &str) -> String {
    img.config
        .extra
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `remote`: the registry digests the store recorded for this image (pulls and pushes);
/// names that pin a digest count too. A built image never pushed has none, as with docker.
fn build(
    id: &rbuild_store::Digest,
    img: &ImageRecord,
    names: &[Reference],
    remote: &[Reference],
    last_tag: Option<String>,
    size: u64,
) -> Inspect {
    let c = img.config.config.clone().unwrap_or_default();
    let mut repo_digests: Vec<String> = names
        .iter()
        .chain(remote)
        .filter_map(|n| n.digest().map(|d| format!("{}@{d}", n.familiar_name())))
        .collect();
    repo_digests.sort();
    repo_digests.dedup();
    Inspect {
        id: id.to_string(),
        repo_tags: names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(|n| n.familiar())
            .collect(),
        repo_digests,
        parent: String::new(),
        comment: extra_str(img, "comment"),
        created: img.config.created.clone().unwrap_or_default(),
        docker_version: extra_str(img, "docker_version"),
        author: img.config.author.clone().unwrap_or_default(),
        config: DockerConfig {
            hostname: String::new(),
            domainname: String::new(),
            user: c.user.unwrap_or_default(),
            attach_stdin: false,
            attach_stdout: false,
            attach_stderr: false,
            exposed_ports: c.exposed_ports,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            env: c.env,
            cmd: c.cmd,
            healthcheck: c.healthcheck,
            args_escaped: c.args_escaped,
            image: String::new(),
            volumes: c.volumes,
            working_dir: c.working_dir.unwrap_or_default(),
            entrypoint: c.entrypoint,
            on_build: c.on_build,
            labels: c.labels,
            stop_signal: c.stop_signal,
            shell: c.shell,
        },
        architecture: img.config.architecture.clone(),
        variant: img.config.variant.clone(),
        os: img.config.os.clone(),
        os_version: img.config.os_version.clone(),
        size,
        root_fs: RootFs {
            kind: img.config.rootfs.kind.clone(),
            layers: img
                .config
                .rootfs
                .diff_ids
                .iter()
                .map(|d| d.to_string())
                .collect(),
        },
        metadata: Metadata {
            last_tag_time: last_tag.unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string()),
        },
        oci_layout_names: names.iter().map(|n| n.to_string()).collect(),
    }
}

pub fn run(global: &GlobalArgs, args: InspectArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let mut docs = Vec::new();
    let mut failed = 0;
    for name in &args.images {
        let found = store
            .resolve_target(name)
            .map_err(miette::Report::new)
            .and_then(|t| Ok((pick_image(&t, platform.as_ref())?, t)));
        match found {
            Ok((img, target)) => {
                let names = store.names_of(target.digest())?;
                let last_tag = store.last_tag_time(target.digest())?;
                let remote = store.repo_digests(target.digest())?;
                // Docker's Size: the image's content, uncompressed.
                let size = img.content_size(&store.content_sizes(&img.layers)?);
                docs.push(build(target.id(), &img, &names, &remote, last_tag, size));
            }
            Err(e) => {
                failed += 1;
                if args.images.len() == 1 {
                    // Docker prints the empty array before the error.
                    if args.format.is_none() {
                        println!("[]");
                    }
                    return Err(e);
                }
                print_error(e);
            }
        }
    }
    match &args.format {
        Some(t) => {
            for d in &docs {
                let v = serde_json::to_value(d).expect("inspect documents serialize");
                println!("{}", render_template(t, &v)?);
            }
        }
        None => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            docs.serialize(&mut ser)
                .expect("inspect documents serialize");
            println!("{}", String::from_utf8_lossy(&buf));
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
