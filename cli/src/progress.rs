//! Build progress rendering: a live multi-line view on a terminal (indicatif), one line per
//! event for CI logs (`plain`), or one JSON object per event (`json`). Implements the solver's
//! `Reporter`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_solver::op::{Op, Platform, Stage, Step, StepId};
use rbuild_solver::reporter::{Event, Reporter};
use serde_json::json;

use crate::commands::build::Progress;

/// How many recent output lines a running step shows in the live view.
const TAIL_LINES: usize = 6;

pub struct ProgressReporter {
    mode: Mode,
    started: Instant,
    state: Mutex<State>,
}

enum Mode {
    /// `--quiet`: nothing but errors.
    Quiet,
    Plain,
    Json,
    Tty(Live),
}

/// The live terminal view: BuildKit's header (`[+] Building 3.2s (4/9)`) above the running
/// steps, each with the last lines of its output; finished steps are printed above it once.
struct Live {
    mp: MultiProgress,
    header: ProgressBar,
}

impl Live {
    fn new() -> Live {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let header = mp.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("[+] Building {secs} ({msg})")
                .expect("valid template")
                .with_key(
                    "secs",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
                    },
                ),
        );
        header.set_message("0/0");
        header.enable_steady_tick(Duration::from_millis(100));
        Live { mp, header }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.header.finish_and_clear();
    }
}

/// A step of one platform's build: the platforms of a multi-platform build share step ids.
type Vertex = (Option<Platform>, StepId);

#[derive(Default)]
struct State {
    /// Vertex numbers in order of first appearance, as BuildKit prints them (`#3`).
    numbers: HashMap<Vertex, usize>,
    next: usize,
    bars: HashMap<Vertex, LiveStep>,
    /// Partial output lines per step (output arrives in arbitrary chunks).
    partial: HashMap<Vertex, Vec<u8>>,
    pub counts: Counts,
    /// Steps of the stages started so far (the header's total, growing as BuildKit's does).
    steps_known: usize,
    /// Steps that failed (done, for the header).
    failed: usize,
}

impl State {
    /// `done/known` for the header.
    fn progress(&self) -> String {
        let done = self.counts.total + self.counts.metadata + self.failed;
        format!("{done}/{}", self.steps_known.max(done))
    }
}

struct LiveStep {
    bar: ProgressBar,
    title: String,
    /// Why it missed the cache (empty when there is nothing to say).
    why: String,
    tail: VecDeque<String>,
}

/// Totals for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Steps that produce a layer or a snapshot (cached + built).
    pub total: usize,
    pub cached: usize,
    pub built: usize,
    /// Metadata-only steps (ENV, LABEL, CMD...): never built, so neither cached nor built.
    pub metadata: usize,
}

impl ProgressReporter {
    pub fn new(progress: Progress, quiet: bool) -> ProgressReporter {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal()
            && std::env::var("TERM").map_or(true, |t| t != "dumb")
            && std::env::var_os("CI").is_none();
        let mode = match progress {
            _ if quiet => Mode::Quiet,
            Progress::Quiet => Mode::Quiet,
            Progress::Plain => Mode::Plain,
            Progress::Json => Mode::Json,
            Progress::Tty => Mode::Tty(Live::new()),
            Progress::Auto if tty => Mode::Tty(Live::new()),
            Progress::Auto => Mode::Plain,
        };
        ProgressReporter {
            mode,
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    pub fn counts(&self) -> Counts {
        self.state.lock().expect("progress lock").counts
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Print a line that is not tied to a step (summary, warnings), without tearing the live
    /// view.
    pub fn line(&self, text: &str) {
        match &self.mode {
            Mode::Tty(live) => {
                let _ = live.mp.println(text);
            }
            Mode::Plain => eprintln!("{text}"),
            Mode::Json => emit_json(json!({ "event": "message", "text": text })),
            Mode::Quiet => {}
        }
    }

    /// The end-of-build summary: a line, or in JSON mode a `summary` event with the fields.
    pub fn summary(&self, text: &str, fields: serde_json::Value) {
        match &self.mode {
            Mode::Json => {
                let mut event = json!({ "event": "summary", "text": text });
                if let (Some(e), serde_json::Value::Object(f)) = (event.as_object_mut(), fields) {
                    e.extend(f);
                }
                emit_json(event);
            }
            Mode::Tty(live) => {
                live.header.finish_and_clear();
                self.line(text);
            }
            _ => self.line(text),
        }
    }

    fn number(state: &mut State, id: &Vertex) -> usize {
        if let Some(n) = state.numbers.get(id) {
            return *n;
        }
        state.next += 1;
        state.numbers.insert(id.clone(), state.next);
        state.next
    }

    /// `[stage 2/3] RUN make`; in a multi-platform build BuildKit's platform prefix, the
    /// platform the stage runs for (`[linux/arm64 build 2/3]`), with `->arch` when a RUN
    /// declares another target (a cross-compiling stage pinned to the build platform).
    fn title(platform: Option<&Platform>, stage: &Stage, step: &Step) -> String {
        let prefix = match platform {
            Some(_) => format!("{}{} ", stage.platform, cross_target(stage, step)),
            None => String::new(),
        };
        format!(
            "[{prefix}{} {}/{}] {}",
            stage.label(),
            step.id.index + 1,
            stage.steps.len(),
            one_line(&step.display)
        )
    }

    /// Report one step event of the build (`platform`: its target platform, in a
    /// multi-platform build).
    pub fn event_in(&self, platform: Option<&Platform>, event: Event<'_>) {
        self.handle(platform, event)
    }
}

/// BuildKit's `->arch` (or `->os/arch`) after a stage's platform when the step's TARGET* ARGs
/// name another platform.
fn cross_target(stage: &Stage, step: &Step) -> String {
    let Op::Run(run) = &step.op else {
        return String::new();
    };
    let get = |name: &str| {
        run.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let target = match get("TARGETPLATFORM").and_then(|v| v.parse::<Platform>().ok()) {
        Some(p) => p,
        None => {
            let (os, arch) = (get("TARGETOS"), get("TARGETARCH"));
            if os.is_none() && arch.is_none() && get("TARGETVARIANT").is_none() {
                return String::new();
            }
            Platform::new(
                os.unwrap_or(&stage.platform.os),
                arch.unwrap_or(&stage.platform.architecture),
                get("TARGETVARIANT").filter(|v| !v.is_empty()),
            )
            .normalized()
        }
    };
    let base = &stage.platform;
    if target.os != base.os {
        format!("->{target}")
    } else if target.architecture != base.architecture {
        match &target.variant {
            Some(v) => format!("->{}/{v}", target.architecture),
            None => format!("->{}", target.architecture),
        }
    } else {
        String::new()
    }
}

/// The terminal's width now (it follows a resize); 80 when stderr is not a terminal.
fn width() -> usize {
    match console::Term::stderr().size_checked() {
        Some((_, cols)) if cols > 0 => cols as usize,
        _ => 80,
    }
}

/// `text` on one row of `width` columns: cut at the last word that fits, with an ellipsis
/// (within a word only when the first word alone is too wide).
fn fit(text: &str, width: usize) -> String {
    if console::measure_text_width(text) <= width {
        return text.to_string();
    }
    let room = width.saturating_sub(1);
    let mut out = String::new();
    for word in text.split(' ') {
        let next = if out.is_empty() {
            word.to_string()
        } else {
            format!("{out} {word}")
        };
        if console::measure_text_width(&next) > room {
            break;
        }
        out = next;
    }
    if out.trim().is_empty() {
        return console::truncate_str(text, width, "…").into_owned();
    }
    format!("{}…", out.trim_end())
}

fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    if text.contains('\n') {
        format!("{first} ...")
    } else {
        first.to_string()
    }
}

/// A step event with its `platform` in a multi-platform build.
fn scoped(mut value: serde_json::Value, platform: &Option<String>) -> serde_json::Value {
    if let (Some(p), Some(map)) = (platform, value.as_object_mut()) {
        map.insert("platform".into(), p.clone().into());
    }
    value
}

fn emit_json(value: serde_json::Value) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{value}");
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Reporter for ProgressReporter {
    fn event(&self, event: Event<'_>) {
        self.handle(None, event)
    }
}

impl ProgressReporter {
    fn handle(&self, platform: Option<&Platform>, event: Event<'_>) {
        if matches!(self.mode, Mode::Quiet) {
            return;
        }
        let vertex = |id: StepId| -> Vertex { (platform.cloned(), id) };
        let shown_platform = platform.map(ToString::to_string);
        let mut state = self.state.lock().expect("progress lock");
        let at = self.started.elapsed().as_secs_f64();
        self.render(platform, event, &mut state, at, &vertex, &shown_platform);
        if let Mode::Tty(live) = &self.mode {
            live.header.set_message(state.progress());
        }
    }

    fn render(
        &self,
        platform: Option<&Platform>,
        event: Event<'_>,
        state: &mut State,
        at: f64,
        vertex: &dyn Fn(StepId) -> Vertex,
        shown_platform: &Option<String>,
    ) {
        match event {
            Event::StageSkipped { stage } => match &self.mode {
                Mode::Json => emit_json(json!({
                    "event": "stage_skipped", "stage": stage.label(), "time": at,
                })),
                _ => self.line(&format!(
                    "skipping stage {} (not needed for the target)",
                    stage.label()
                )),
            },
            Event::StageStart { stage } => state.steps_known += stage.steps.len(),
            Event::StepMeta { stage, step } => {
                state.counts.metadata += 1;
                let n = Self::number(state, &vertex(step.id));
                match &self.mode {
                    Mode::Json => emit_json(scoped(
                        json!({
                            "event": "step_meta", "vertex": n, "stage": stage.label(),
                            "step": step.display, "line": step.site.line, "time": at,
                        }),
                        shown_platform,
                    )),
                    _ => self.line(&format!("#{n} {}", Self::title(platform, stage, step))),
                }
            }
            Event::StepCached { stage, step, key } => {
                state.counts.total += 1;
                state.counts.cached += 1;
                let n = Self::number(state, &vertex(step.id));
                match &self.mode {
                    Mode::Json => emit_json(scoped(
                        json!({
                            "event": "step_cached", "vertex": n, "stage": stage.label(),
                            "step": step.display, "line": step.site.line, "key": key, "time": at,
                        }),
                        shown_platform,
                    )),
                    _ => self.line(&format!(
                        "#{n} {} CACHED",
                        Self::title(platform, stage, step)
                    )),
                }
            }
            Event::StepMiss {
                stage,
                step,
                key,
                reasons,
            } => {
                let n = Self::number(state, &vertex(step.id));
                let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                match &self.mode {
                    Mode::Json => emit_json(scoped(
                        json!({
                            "event": "step_miss", "vertex": n, "stage": stage.label(),
                            "step": step.display, "line": step.site.line, "key": key,
                            "reasons": reasons, "time": at,
                        }),
                        shown_platform,
                    )),
                    Mode::Quiet => {}
                    Mode::Plain => {
                        eprintln!("#{n} {}", Self::title(platform, stage, step));
                        if !why.is_empty() {
                            eprintln!("#{n} missed: {}", why.join("; "));
                        }
                    }
                    Mode::Tty(live) => {
                        let title = Self::title(platform, stage, step);
                        let bar = live.mp.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4}{msg}")
                                .expect("valid template"),
                        );
                        // The spinner and the elapsed time take about 8 columns.
                        bar.set_prefix(fit(&format!("#{n} {title}"), width().saturating_sub(8)));
                        bar.enable_steady_tick(Duration::from_millis(120));
                        state.bars.insert(
                            vertex(step.id),
                            LiveStep {
                                bar,
                                title,
                                why: why.join("; "),
                                tail: VecDeque::new(),
                            },
                        );
                    }
                }
            }
            Event::StepLog { step, data } => {
                let n = Self::number(state, &vertex(step));
                let buf = state.partial.entry(vertex(step)).or_default();
                buf.extend_from_slice(data);
                let mut lines = Vec::new();
                while let Some(pos) = buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if !text.is_empty() {
                        lines.push(text);
                    }
                }
                for text in lines {
                    match &self.mode {
                        Mode::Json => emit_json(json!({
                            "event": "log", "vertex": n, "text": text, "time": at,
                        })),
                        Mode::Plain => eprintln!("#{n} {at:.3} {text}"),
                        Mode::Quiet => {}
                        Mode::Tty(_) => {
                            if let Some(live) = state.bars.get_mut(&vertex(step)) {
                                live.tail.push_back(text);
                                while live.tail.len() > TAIL_LINES {
                                    live.tail.pop_front();
                                }
                                // Each line on one row of the terminal as it is now (the width
                                // follows a resize), indented under the step.
                                let width = width().saturating_sub(2);
                                let msg: String = live
                                    .tail
                                    .iter()
                                    .map(|l| {
                                        format!("\n  {}", fit(&l.replace('\t', "    "), width))
                                    })
                                    .collect();
                                live.bar.set_message(msg);
                            }
                        }
                    }
                }
            }
            Event::StepDone {
                stage,
                step,
                layer,
                elapsed,
            } => {
                state.counts.total += 1;
                state.counts.built += 1;
                let n = Self::number(state, &vertex(step.id));
                let rest = state.partial.remove(&vertex(step.id)).unwrap_or_default();
                if !rest.is_empty() && matches!(self.mode, Mode::Plain) {
                    eprintln!("#{n} {at:.3} {}", String::from_utf8_lossy(&rest));
                }
                match &self.mode {
                    Mode::Json => emit_json(scoped(
                        json!({
                            "event": "step_done", "vertex": n, "stage": stage.label(),
                            "step": step.display, "line": step.site.line,
                            "layer": layer.map(|l| &l.diff_id), "size": layer.map(|l| l.size),
                            "seconds": elapsed.as_secs_f64(), "time": at,
                        }),
                        shown_platform,
                    )),
                    Mode::Plain => eprintln!("#{n} DONE {}", secs(elapsed)),
                    Mode::Quiet => {}
                    Mode::Tty(tty) => {
                        if let Some(live) = state.bars.remove(&vertex(step.id)) {
                            live.bar.finish_and_clear();
                            tty.mp.remove(&live.bar);
                            // One line per step, printed once, when it is done; why it ran
                            // follows on a line of its own, as in plain mode.
                            let done = format!(" DONE {}", secs(elapsed));
                            let label = format!("#{n} {}", live.title);
                            let mut text = format!(
                                "{}{done}",
                                fit(&label, width().saturating_sub(done.len()))
                            );
                            if !live.why.is_empty() {
                                text.push_str(&format!("\n#{n} missed: {}", live.why));
                            }
                            let _ = tty.mp.println(text);
                        }
                    }
                }
            }
            Event::StepFailed { stage, step } => {
                state.failed += 1;
                let n = Self::number(state, &vertex(step.id));
                match &self.mode {
                    Mode::Json => emit_json(scoped(
                        json!({
                            "event": "step_failed", "vertex": n, "stage": stage.label(),
                            "step": step.display, "line": step.site.line, "time": at,
                        }),
                        shown_platform,
                    )),
                    Mode::Plain => eprintln!("#{n} ERROR"),
                    Mode::Quiet => {}
                    Mode::Tty(tty) => {
                        if let Some(live) = state.bars.remove(&vertex(step.id)) {
                            live.bar.finish_and_clear();
                            tty.mp.remove(&live.bar);
                            let label = format!("#{n} {}", live.title);
                            let _ = tty.mp.println(format!(
                                "{} ERROR",
                                fit(&label, width().saturating_sub(6))
                            ));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    /// A line wider than the terminal is cut after the last whole word that fits, with an
    /// ellipsis; a single overlong word is cut inside; short lines stay as they are.
    #[test]
    fn fit_cuts_at_a_word_with_an_ellipsis() {
        assert_eq!(fit("short line", 20), "short line");
        assert_eq!(
            fit("compiling the first crate now", 20),
            "compiling the first…"
        );
        assert_eq!(fit("supercalifragilistic", 10), "supercali…");
        for w in 1..40 {
            let line = fit("the quick brown fox jumps over the lazy dog", w);
            assert!(console::measure_text_width(&line) <= w, "{w}: {line}");
        }
    }
}
