//! The state a stage accumulates while its instructions are planned: build-time variables (ENV
//! and ARG values), declared ARGs, and the image config being built.

use rbuild_store::{ContainerConfig, ImageConfig};

use super::expand::Vars;
use crate::op::Platform;

/// PATH BuildKit adds when an image has none (Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub struct StageState {
    /// The build-time environment: the image's Env, then ENV and ARG values in order.
    pub vars: Vars,
    /// ARGs declared in this stage (and the stage it is based on), with their values, in
    /// declaration order: they are passed to RUN and shown in RUN's history text.
    pub build_args: Vec<(String, Option<String>)>,
    pub config: ImageConfig,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

impl StageState {
    fn new(mut config: ImageConfig) -> StageState {
        let container = config.config.get_or_insert_with(ContainerConfig::default);
        container.on_build = None;
        let env = container.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.split('=').next() == Some("PATH")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        let mut vars = Vars::default();
        for entry in env.iter() {
            let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            vars.set(k, v);
        }
        StageState {
            vars,
            build_args: Vec::new(),
            config,
            cmd_set: false,
        }
    }

    /// `FROM scratch`: an empty config for the target platform, PATH and WorkingDir `/` set as
    /// BuildKit's empty image has them.
    pub fn scratch(platform: &Platform) -> StageState {
        StageState::new(scratch_config(platform))
    }

    /// `FROM image`: its config, without its ONBUILD triggers (they run once, in this stage).
    pub fn from_image(config: ImageConfig) -> StageState {
        StageState::new(config)
    }

    /// `FROM stage`: inherit everything but ONBUILD triggers and the CMD-was-set flag.
    pub fn for_child(&self) -> StageState {
        let mut child = self.clone();
        if let Some(c) = child.config.config.as_mut() {
            c.on_build = None;
        }
        child.cmd_set = false;
        child
    }

    pub fn container(&mut self) -> &mut ContainerConfig {
        self.config
            .config
            .get_or_insert_with(ContainerConfig::default)
    }

    fn container_ref(&self) -> Option<&ContainerConfig> {
        self.config.config.as_ref()
    }

    /// The working directory as a clean absolute path (the config may hold it as written).
    pub fn workdir(&self) -> String {
        self.container_ref()
            .and_then(|c| c.working_dir.as_deref())
            .filter(|w| !w.is_empty())
            .map(super::meta::clean_path)
            .unwrap_or_else(|| "/".into())
    }

    pub fn user(&self) -> String {
        self.container_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    /// The shell for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        self.container_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// ENV: update both the build-time variables and the image config (replacing in place).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.vars.set(key, value);
        let env = self.container().env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }

    /// The environment a RUN process gets: every variable with a value.
    pub fn run_env(&self) -> Vec<(String, String)> {
        self.vars
            .pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn finished_config(&self) -> ImageConfig {
        self.config.clone()
    }
}

/// BuildKit's empty image for `platform` (`FROM scratch`, a named context's directory image):
/// no layers, `WorkingDir /`; the planner adds PATH.
pub fn scratch_config(platform: &Platform) -> ImageConfig {
    ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: Some(ContainerConfig {
            working_dir: Some("/".into()),
            ..ContainerConfig::default()
        }),
        ..ImageConfig::default()
    }
}
