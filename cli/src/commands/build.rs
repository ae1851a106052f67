//! `rbuild build`: the flags, turned into the engine's `BuildOptions`; the build itself is
//! `rbuild_engine::build`, rendered by `render::BuildView`; then the summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use rbuild_engine::{BuildOptions, DockerfileSource, PrepareOptions, PullPolicy};
use rbuild_executor::build::SecretSource;
use rbuild_solver::op::Platform;
use rbuild_solver::worker::CancelToken;

use crate::args::GlobalArgs;
use crate::render::BuildView;

/// Flags shared by `build` and the commands that plan a build without running it.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag for the image (`name:tag`); may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,

    /// The Dockerfile to build (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Set a build-time variable declared with ARG (`KEY=VALUE`, or `KEY` to take it from
    /// the environment); may be repeated.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Build only up to this stage (its name after `FROM ... AS`).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Do not use the build cache: run every step.
    #[arg(long)]
    pub no_cache: bool,

    /// Do not use the build cache for these stages' steps (names after `FROM ... AS`; a
    /// comma list, or the flag repeated).
    #[arg(long, value_name = "STAGE[,STAGE]", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,

    /// How to show progress: a live view on a terminal, one line per event, JSON events
    /// (`rawjson` is docker's name for them), or `quiet` (as `-q`).
    #[arg(long, value_enum, default_value_t = Progress::Auto, value_name = "MODE")]
    pub progress: Progress,

    /// Target platform (`linux/amd64`); defaults to this machine's. Several (a comma list,
    /// or the flag repeated: `linux/amd64,linux/arm64`) build one image per platform and an
    /// image index over them, which `-t` names.
    #[arg(long, value_name = "OS/ARCH[/VARIANT],...")]
    pub platform: Vec<String>,

    /// How many stages may build at the same time (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Fail instead of building when any step would miss the cache (a CI guard; exit code 5).
    #[arg(long)]
    pub fail_on_cache_miss: bool,

    /// Before building, explain every cache miss in full (as `rbuild explain` does).
    #[arg(long)]
    pub explain: bool,

    /// A secret for `RUN --mount=type=secret` (`id=NAME,src=FILE` or `id=NAME,env=VAR`);
    /// never stored in the image or the cache.
    #[arg(long, value_name = "id=NAME,src=FILE|env=VAR")]
    pub secret: Vec<String>,

    /// A named context for `FROM NAME`, `COPY --from=NAME` and `RUN --mount from=NAME`
    /// (it replaces a stage or image of that name): a directory, `docker-image://REF` or
    /// `oci-layout://DIR[:TAG]`.
    #[arg(
        long,
        value_name = "NAME=DIR|docker-image://REF|oci-layout://DIR[:TAG]"
    )]
    pub build_context: Vec<String>,

    /// An ssh agent for `RUN --mount=type=ssh`: `default` or `ID` forward $SSH_AUTH_SOCK,
    /// `ID=SOCKET` another agent's socket, `ID=KEY[,KEY]` key files served by an agent of
    /// rbuild's; never stored in the image or the cache.
    #[arg(long, value_name = "default|ID[=SOCKET|KEY[,KEY]]")]
    pub ssh: Vec<String>,

    /// Network for RUN steps that do not choose one: `default`/`host` or `none`.
    #[arg(long, value_name = "MODE", default_value = "default")]
    pub network: String,

    /// Allow what RUN steps may ask for (repeatable, or a comma list): `network.host` for
    /// `RUN --network=host`, `security.insecure` for `RUN --security=insecure`.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,

    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write the build result (image digest, config digest, names) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Also write the result elsewhere (repeatable): `type=local,dest=DIR` (the root
    /// filesystem), `type=tar,dest=FILE|-`, `type=oci,dest=DIR|FILE.tar`,
    /// `type=docker,dest=FILE.tar` (for `docker load`), `type=image,name=NAME`; `-o DIR` is
    /// `type=local,dest=DIR` and `-o -` a tar on stdout.
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    pub output: Vec<String>,

    /// Build twice (the second time without the cache) with the same SOURCE_DATE_EPOCH
    /// (default 0) and fail, naming every differing file, unless both give the same image.
    #[arg(long)]
    pub verify_reproducible: bool,

    /// Memory limit (memory + swap) for each RUN step, e.g. `2g`; a step the kernel kills
    /// for exceeding it fails as out of memory.
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = crate::args::parse_memory)]
    pub memory: Option<u64>,

    /// Most processes and threads each RUN step may have at once (default 8192; -1 for no
    /// limit); a step whose fork fails at the limit says so.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = crate::args::parse_pids_limit)]
    pub pids_limit: Option<rbuild_executor::sandbox::PidsLimit>,

    /// Set a label on the image (`KEY=VALUE`; may be repeated); overrides a Dockerfile
    /// `LABEL` of the same key, as `docker build --label` does.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Add an annotation (BuildKit's syntax, repeatable): `KEY=VALUE` or `manifest:KEY=VALUE`
    /// on the image manifest; for a multi-platform build also `index:KEY=VALUE` (the index)
    /// and `manifest-descriptor:KEY=VALUE` (each manifest's entry in the index).
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,

    /// Add a line to RUN steps' `/etc/hosts` (`NAME:IP` or `NAME=IP`; may be repeated); not
    /// part of the image, part of RUN steps' cache keys (as in BuildKit).
    #[arg(long = "add-host", value_name = "NAME:IP", value_parser = parse_add_host)]
    pub add_hosts: Vec<(String, String)>,

    /// Size of RUN steps' `/dev/shm` (e.g. `128m`, `1g`; default 64m).
    #[arg(long, value_name = "SIZE", value_parser = parse_shm_size)]
    pub shm_size: Option<u64>,

    /// A resource limit of RUN steps (`NAME=SOFT[:HARD]`, e.g. `nofile=1024:4096`; -1 is
    /// unlimited; may be repeated): core, cpu, data, fsize, locks, memlock, msgqueue, nice,
    /// nofile, nproc, rss, rtprio, rttime, sigpending, stack.
    #[arg(long, value_name = "NAME=SOFT[:HARD]", value_parser = rbuild_executor::sandbox::Ulimit::parse)]
    pub ulimit: Vec<rbuild_executor::sandbox::Ulimit>,

    /// Accepted for docker compatibility and ignored: rbuild keeps no intermediate containers.
    #[arg(long, hide_short_help = true)]
    pub rm: bool,

    /// Accepted for docker compatibility and ignored: rbuild keeps no intermediate containers.
    #[arg(long, hide_short_help = true)]
    pub force_rm: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// The build context: the directory whose files COPY and ADD can use; `-` reads a tar
    /// archive of it from stdin (or just a Dockerfile: then there is no context); a git URL
    /// (`https://host/repo.git#REF:SUBDIR`, `git@host:repo.git`, `git://host/repo`) is
    /// fetched and checked out.
    #[arg(value_name = "CONTEXT|-|URL")]
    pub context: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// `tty` on a terminal, `plain` otherwise.
    Auto,
    Tty,
    Plain,
    /// One JSON event a line (docker's `rawjson`).
    #[value(alias = "rawjson")]
    Json,
    /// No progress; print only the image ID (as `-q`).
    Quiet,
}

impl BuildArgs {
    /// `-q` or `--progress quiet`.
    pub fn is_quiet(&self) -> bool {
        self.quiet || self.progress == Progress::Quiet
    }
}

/// Registry flags of `rbuild build` (also accepted by `explain` and `plan`, which honour
/// `--pull` and `--cache-from` and ignore the rest).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// When to pull base images: `--pull` (= `always`) checks the registry for newer
    /// versions of their tags and pulls those whose digest changed; `missing` (the default)
    /// pulls only images not in the store; `never` uses stored images only (offline builds).
    #[arg(
        long,
        value_enum,
        value_name = "always|missing|never",
        num_args = 0..=1,
        require_equals = true,
        default_value = "missing",
        default_missing_value = "always"
    )]
    pub pull: PullArg,

    /// After a successful build, push every `-t` name to its registry.
    #[arg(long)]
    pub push: bool,

    /// Compression for built layers pushed with `--push` (and the default for `--cache-to`).
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    pub compression: String,

    /// Import build cache: `type=registry,ref=REGISTRY/REPO:TAG` (or just the reference) or
    /// `type=local,src=DIR` (an OCI layout directory); may be repeated. A reference to an
    /// image built with `--cache-to type=inline` reads the cache inside it (rbuild's own,
    /// `dev.rbuild.cache.v1`; BuildKit's `moby.buildkit.cache.v0` cannot be used). An
    /// unreachable or missing cache is a warning.
    #[arg(
        long = "cache-from",
        value_name = "type=registry,ref=REF|REF|type=local,src=DIR"
    )]
    pub cache_from: Vec<String>,

    /// Export the build cache after the build:
    /// `type=registry,ref=REF` or `type=local,dest=DIR`, with
    /// `[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]`; or `type=inline`
    /// (mode=min only): embed it in the built image's config, in rbuild's format
    /// (`dev.rbuild.cache.v1`, which BuildKit does not read), for `--cache-from IMAGE`.
    #[arg(
        long = "cache-to",
        value_name = "type=registry,ref=REF|type=local,dest=DIR|type=inline"
    )]
    pub cache_to: Vec<String>,
}

/// `--pull[=POLICY]`, as Buildah and Podman spell it (docker's bare `--pull` is `always`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullArg {
    /// Re-check every base image's tag against its registry.
    Always,
    /// Pull only what the store does not have.
    Missing,
    /// Never contact a registry for base images.
    Never,
}

impl From<PullArg> for PullPolicy {
    fn from(arg: PullArg) -> PullPolicy {
        match arg {
            PullArg::Always => PullPolicy::Always,
            PullArg::Missing => PullPolicy::Missing,
            PullArg::Never => PullPolicy::Never,
        }
    }
}

/// `--secret id=x,src=file` / `id=x,env=VAR` (a bare `id=x` reads the env var `x`).
fn secrets(args: &BuildArgs) -> miette::Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for raw in &args.secret {
        let mut id = None;
        let mut source = None;
        for field in raw.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => source = Some(SecretSource::File(v.into())),
                Some(("env", v)) => source = Some(SecretSource::Env(v.to_string())),
                _ => {
                    return Err(miette::miette!(
                        code = "rbuild::usage::secret",
                        help = "write `--secret id=NAME,src=FILE` or `--secret id=NAME,env=VAR`",
                        "cannot parse `--secret {raw}` at `{field}`"
                    ));
                }
            }
        }
        let Some(id) = id else {
            return Err(miette::miette!(
                code = "rbuild::usage::secret",
                help = "write `--secret id=NAME,src=FILE`",
                "`--secret {raw}` has no id"
            ));
        };
        let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
        // Checked before the build starts: a RUN step that hits the cache never reads it, and
        // a typo in the path must not pass silently then.
        if let SecretSource::File(path) = &source {
            let problem = match std::fs::metadata(path) {
                Ok(m) if m.is_file() => None,
                Ok(_) => Some("it is not a regular file".to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                return Err(miette::miette!(
                    code = "rbuild::usage::secret",
                    help = "fix the `src=` path of `--secret id={id},src=FILE` (relative to the \
                            current directory), or pass the value with `--secret id={id},env=VAR`",
                    "cannot read the file of `--secret {raw}`: {problem}"
                ));
            }
        }
        out.insert(id, source);
    }
    Ok(out)
}

/// One `--label KEY=VALUE` (clap's value parser: a bad one is a usage error at the flag).
fn parse_label(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE, e.g. `--label org.opencontainers.image.version=1.2`".into()),
    }
}

/// One `--add-host NAME:IP` (docker also takes `NAME=IP`; with `:` the name ends at the first
/// one, so `h:::1` is IPv6 `::1`). The IP is checked; the name has no blanks.
fn parse_add_host(raw: &str) -> Result<(String, String), String> {
    let (name, ip) = raw
        .split_once('=')
        .or_else(|| raw.split_once(':'))
        .ok_or("expected NAME:IP (or NAME=IP), e.g. `--add-host db:10.0.0.5`")?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(format!("invalid host name `{name}`"));
    }
    if ip == "host-gateway" {
        return Err(
            "`host-gateway` is not supported: RUN steps use the host's network, \
                    so name 127.0.0.1 or the host's address"
                .into(),
        );
    }
    // docker accepts an IPv6 address in brackets.
    let bare = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    let parsed: std::net::IpAddr = bare
        .parse()
        .map_err(|_| format!("invalid IP address `{ip}`"))?;
    Ok((name.to_string(), parsed.to_string()))
}

/// `--shm-size`: the store's size grammar with docker's binary units (`64m`, `1g`); above 0.
fn parse_shm_size(text: &str) -> Result<u64, String> {
    use rbuild_store::size::{Base, parse};
    let bytes = parse(text, Base::Binary)
        .map_err(|e| format!("{e} (e.g. `128m`, `1g`; k, m, g are powers of 1024)"))?;
    if bytes == 0 {
        return Err("the size of /dev/shm must be above 0".into());
    }
    Ok(bytes)
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` or the environment.
pub(crate) fn source_date_epoch(args: &BuildArgs) -> miette::Result<Option<i64>> {
    let from_arg = build_args(args)?.remove("SOURCE_DATE_EPOCH");
    let value = from_arg.or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            miette::miette!(
                code = "rbuild::usage::source_date_epoch",
                help = "SOURCE_DATE_EPOCH is a number of seconds since 1970, e.g. `$(git log -1 --format=%ct)`",
                "invalid SOURCE_DATE_EPOCH `{v}`"
            )
        }),
    }
}

/// `--build-arg K=V` / `--build-arg K` (value from the environment, skipped when unset).
pub fn build_args(args: &BuildArgs) -> miette::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for raw in &args.build_args {
        match raw.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                return Err(miette::miette!(
                    code = "rbuild::usage::build_arg",
                    help = "write `--build-arg NAME=value`",
                    "`--build-arg {raw}` has no name"
                ));
            }
            None => {
                if let Some(v) = std::env::var_os(raw) {
                    out.insert(raw.clone(), v.to_string_lossy().into_owned());
                }
            }
        }
    }
    Ok(out)
}

/// Parse `--platform` values (each a comma list, as buildx) with the store's one platform
/// grammar, normalised as containerd does (`linux/x86_64` is `linux/amd64`, `linux/arm64/v8`
/// is `linux/arm64`), so the cache key, TARGETARCH and the image matched are the same however
/// the platform is spelled. Duplicates are dropped by `PrepareOptions::set_platforms`.
fn platforms(values: &[String]) -> miette::Result<Vec<Platform>> {
    let mut out = Vec::new();
    for value in values {
        for text in value.split(',') {
            let text = text.trim();
            let parsed = text.parse::<Platform>().map_err(|e| {
                miette::miette!(
                    code = "rbuild::usage::platform",
                    help = "write `--platform linux/amd64` (os/arch[/variant]), several as a \
                            comma list: `--platform linux/amd64,linux/arm64`",
                    "invalid platform `{text}` in `--platform {value}`: {e}"
                )
            })?;
            out.push(parsed);
        }
    }
    Ok(out)
}

/// The store root a command uses.
pub fn store_root(global: &GlobalArgs) -> PathBuf {
    global
        .root
        .clone()
        .unwrap_or_else(rbuild_store::default_root)
}

/// What `build`, `explain` and `plan` plan: the flags they share.
pub fn prepare_options(global: &GlobalArgs, args: &BuildArgs) -> miette::Result<PrepareOptions> {
    let epoch = source_date_epoch(args)?;
    let dockerfile = match args.file.as_deref() {
        None => DockerfileSource::InContext,
        Some(f) if f == Path::new("-") => DockerfileSource::Stdin,
        Some(f) => DockerfileSource::Path(f.to_path_buf()),
    };
    let mut options = PrepareOptions {
        root: store_root(global),
        context: rbuild_engine::ContextSource::from_arg(&args.context)?,
        dockerfile,
        build_args: build_args(args)?,
        target: args.target.clone(),
        platforms: Vec::new(),
        pull: args.registry.pull.into(),
        cache_from: rbuild_engine::registry::spec::parse_all(
            "--cache-from",
            &args.registry.cache_from,
        )?,
        no_cache: args.no_cache,
        source_date_epoch: epoch,
        extra_hosts: args.add_hosts.clone(),
        shm_size: args.shm_size,
        ulimits: args.ulimit.clone(),
        no_cache_filter: args.no_cache_filter.clone(),
        named_contexts: rbuild_engine::named_context::parse(&args.build_context)?,
    };
    options.set_platforms(platforms(&args.platform)?);
    Ok(options)
}

/// Every flag of `rbuild build`, checked (a typo fails before anything runs).
pub fn build_options(global: &GlobalArgs, args: &BuildArgs) -> miette::Result<BuildOptions> {
    let tags = rbuild_engine::finish::parse_tags(&args.tags)?;
    let outputs = rbuild_engine::output::parse_all(&args.output, args.is_quiet())?;
    rbuild_engine::registry::push::check(args.registry.push, &tags)?;
    let cache_to = rbuild_engine::registry::spec::parse_all("--cache-to", &args.registry.cache_to)?;
    let compression: rbuild_registry::Compression = args.registry.compression.parse()?;
    let secrets = secrets(args)?;
    let ssh = rbuild_engine::ssh::parse(&args.ssh, std::env::var_os("SSH_AUTH_SOCK").as_deref())?;
    // In order: a later `--label` of the same key wins, as in docker.
    let labels = args.labels.iter().cloned().collect();
    source_date_epoch(args)?;
    let network = match args.network.as_str() {
        "default" | "host" => rbuild_solver::op::Network::Default,
        "none" => rbuild_solver::op::Network::None,
        other => {
            return Err(miette::miette!(
                code = "rbuild::usage::network",
                help = "use `--network default` (the host's network) or `--network none`",
                "unknown network mode `{other}`"
            ));
        }
    };
    let allow = rbuild_engine::entitlements::Allowed::parse(&args.allow)?;
    let prepare = prepare_options(global, args)?;
    let annotations =
        rbuild_engine::Annotations::parse(&args.annotations, prepare.is_multi_platform())?;
    Ok(BuildOptions {
        prepare,
        annotations,
        tags,
        outputs,
        iidfile: args.iidfile.clone(),
        metadata_file: args.metadata_file.clone(),
        secrets,
        ssh,
        labels,
        network,
        allow,
        memory: args.memory,
        pids_limit: args.pids_limit.unwrap_or_default(),
        jobs: args.jobs,
        backend: global.executor_options().backend,
        explain: args.explain,
        fail_on_cache_miss: args.fail_on_cache_miss,
        verify_reproducible: args.verify_reproducible,
        push: args.registry.push,
        cache_to,
        compression,
    })
}

pub fn run(global: &GlobalArgs, args: BuildArgs) -> miette::Result<u8> {
    let options = build_options(global, &args)?;
    if args.rm || args.force_rm {
        let flag = if args.force_rm { "--force-rm" } else { "--rm" };
        eprintln!("note: {flag} is ignored: rbuild keeps no intermediate containers");
    }
    let cancel = CancelToken::new();
    crate::interrupt::cancel_on_interrupt(&cancel);
    let view = BuildView::new(args.progress, args.is_quiet());
    let result = rbuild_engine::build(&options, &view, &cancel)?;
    let target = &result.target;
    if args.is_quiet() {
        println!("{}", target.id());
        return Ok(0);
    }
    // Docker's size: content uncompressed, each layer once (bases may be stored compressed).
    let store = rbuild_store::Store::open(store_root(global))?;
    let size = target.content_size(&store.content_sizes(&target.layers())?);
    let reporter = view.view();
    let counts = reporter.counts();
    let elapsed = reporter.elapsed().as_secs_f64();
    let platforms: Vec<String> = match target {
        rbuild_store::Target::Index(_) => {
            result.images.iter().map(|(p, _)| p.to_string()).collect()
        }
        rbuild_store::Target::Image(_) => Vec::new(),
    };
    let what = if platforms.is_empty() {
        target.id().short().to_string()
    } else {
        format!("{} for {}", target.id().short(), platforms.join(", "))
    };
    let mut fields = serde_json::json!({
        "image_id": target.id().to_string(),
        "manifest_digest": target.digest().to_string(),
        "seconds": elapsed,
        "steps": counts.total,
        "cached": counts.cached,
        "built": counts.built,
        "metadata": counts.metadata,
        "size": size,
        "tags": result.names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
    });
    if !platforms.is_empty() {
        fields["platforms"] = serde_json::json!(platforms);
        fields["images"] = result
            .images
            .iter()
            .map(|(p, image)| {
                serde_json::json!({
                    "platform": p.to_string(),
                    "image_id": image.id().to_string(),
                    "manifest_digest": image.manifest_digest.to_string(),
                })
            })
            .collect();
    }
    reporter.summary(
        &format!(
            "built {what} in {elapsed:.1}s: {} steps, {} cached, {} built (+{} metadata); size {}",
            counts.total,
            counts.cached,
            counts.built,
            counts.metadata,
            rbuild_store::size::human(size)
        ),
        fields,
    );
    for w in &result.written {
        reporter.line(&format!("wrote {}", w.what));
    }
    for tag in &result.names {
        reporter.line(&format!("tagged {}", tag.familiar()));
    }
    Ok(0)
}
