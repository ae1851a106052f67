//! Parser throughput: the whole BuildKit conformance corpus, and a generated Dockerfile of
//! 10,000 instructions (every kind, flags, continuations, heredocs). Reports bytes/second of
//! parsing; freeing the tree afterwards is not timed (`iter_with_large_drop`). Group `parse`
//! measures wall-clock time; group `parse_cpu` the same work in the thread's CPU time, which
//! other processes on a busy machine disturb far less (the one-core figure).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// CPU time consumed by the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.unsigned_abs(), t.tv_nsec.unsigned_abs() as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Values are nanoseconds of CPU time; throughput is shown in MiB/s like wall-clock groups.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical_ns < 1e6 {
            (1e-3, "µs (cpu)")
        } else {
            (1e-6, "ms (cpu)")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iter, unit) = match *throughput {
            Throughput::Bytes(b) => (b as f64 / (1024.0 * 1024.0), "MiB/s (cpu)"),
            Throughput::BytesDecimal(b) => (b as f64 / 1e6, "MB/s (cpu)"),
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => {
                (e as f64, "elem/s (cpu)")
            }
            Throughput::Bits(b) => (b as f64, "b/s (cpu)"),
        };
        values.iter_mut().for_each(|ns| *ns = per_iter * 1e9 / *ns);
        unit
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The conformance corpus beside the repository (`../shared`, or `RBUILD_SHARED`).
fn corpus() -> Vec<String> {
    let shared = std::env::var_os("RBUILD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("conformance/parser/cases");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path().join("Dockerfile");
        files.push(std::fs::read_to_string(path).unwrap());
    }
    files
}

/// A large realistic Dockerfile: 10,000 instructions across 100 stages.
pub fn generated(instructions: usize) -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut n = 0;
    let mut stage = 0;
    while n < instructions {
        let i = n;
        let line = match i % 20 {
            0 => {
                stage += 1;
                format!("FROM --platform=$BUILDPLATFORM ${{BASE}} AS stage{stage}\n")
            }
            1 => format!("ARG VERSION_{i}=1.{i}\n"),
            2 => format!("ENV PATH=/opt/app{i}/bin:$PATH APP_HOME=\"/srv/app {i}\"\n"),
            3 => "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    apt-get update \\\n    && apt-get install -y --no-install-recommends curl ca-certificates \\\n    && rm -rf /var/lib/apt/lists/*\n".to_string(),
            4 => format!("COPY --chown=1000:1000 --chmod=0644 --link src/{i}/ /app/{i}/\n"),
            5 => format!("WORKDIR /app/{i}\n"),
            6 => format!("LABEL org.example.build=\"{i}\" org.example.stage=\"{stage}\"\n"),
            7 => "RUN <<EOF\nset -e\necho building\nmake -j2 all\nEOF\n".to_string(),
            8 => format!("EXPOSE {}/tcp\n", 8000 + i % 1000),
            9 => "USER app:app\n".to_string(),
            10 => format!("ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/{i}.tar.gz /tmp/\n"),
            11 => "VOLUME [\"/data\", \"/logs\"]\n".to_string(),
            12 => format!("ENV ITEM_{i}=${{VERSION_{}:-default}}\n", i - 11),
            13 => "HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD [\"/bin/check\"]\n".to_string(),
            14 => "# a comment between instructions\nSTOPSIGNAL SIGTERM\n".to_string(),
            15 => "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n".to_string(),
            16 if stage > 1 => format!("COPY --from=stage{} /app /app\n", stage - 1),
            17 => "ONBUILD RUN echo triggered\n".to_string(),
            18 => "CMD [\"/app/server\", \"--port\", \"8080\"]\n".to_string(),
            _ => format!("RUN echo step {i} && test -d /app\n"),
        };
        s.push_str(&line);
        n += 1;
    }
    s.push_str("ENTRYPOINT [\"/app/server\"]\n");
    s
}

/// Both inputs in one group named `name`, timed with `M`.
fn bench_with<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let files = corpus();
    let total: usize = files.iter().map(String::len).sum();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("conformance_corpus", |b| {
        b.iter_with_large_drop(|| {
            files
                .iter()
                .map(|f| rbuild_parser::parse(black_box(f)))
                .collect::<Vec<_>>()
        })
    });
    let big = generated(10_000);
    let check = rbuild_parser::parse(&big);
    if let Some(e) = check.errors().next() {
        panic!(
            "generated file must be valid: {e} at {}:{}",
            e.line, e.column
        );
    }
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("generated_10k_instructions", |b| {
        b.iter_with_large_drop(|| rbuild_parser::parse(black_box(&big)))
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench_with(c, "parse");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_with(c, "parse_cpu");
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_clock, cpu_time);
