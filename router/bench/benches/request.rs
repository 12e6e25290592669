//! CPU per request of the whole path, in four setups (bare, four policies, everything on, a cache
//! hit), and of the stub upstream alone: the figure issue 17 drives down.
//!
//!   bash policies/build.sh
//!   cargo bench -p switchyard-bench --bench request
//!
//! One iteration is one chat completion through `switchyard::app` (`oneshot`, no ingress
//! socket) to a loopback stub. The measurement is the process's CPU time over all its threads,
//! so the request log's writer and the policy engine are counted; `stub` is what the stub and
//! the loopback round trip cost on their own, to be taken off the others.
#![allow(clippy::expect_used, clippy::panic)]

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard_bench::{Bench, Setup, Stub, process_cpu};

/// Process CPU time, all threads, in nanoseconds.
struct Cpu;

impl Measurement for Cpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        process_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        process_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Micros
    }
}

/// Every figure in microseconds of CPU.
struct Micros;

impl ValueFormatter for Micros {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values {
            *v /= 1e3;
        }
        "µs cpu"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *t {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Bits(n) => n,
        };
        for v in values {
            *v = n as f64 * 1e9 / *v;
        }
        "req/cpu-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn request(c: &mut Criterion<Cpu>) {
    // One thread for the gateway and the stub: no cross-thread wake-ups in the figure (the
    // third-party method pins the gateway to one core the same way). Work the gateway hands
    // to threads of its own (SQLite's, the policy engine's) is still counted.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stub = rt.block_on(Stub::start()).expect("stub upstream");
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("stub", |b| {
        b.iter_custom(|n| {
            rt.block_on(async {
                let start = process_cpu();
                for _ in 0..n {
                    stub.direct().await.expect("stub call");
                }
                process_cpu().saturating_sub(start)
            })
        })
    });
    for setup in Setup::ALL {
        let bench = rt
            .block_on(Bench::new(setup, stub.addr))
            .unwrap_or_else(|e| panic!("{}: {e}", setup.name()));
        group.bench_function(setup.name(), |b| {
            b.iter_custom(|n| {
                rt.block_on(async {
                    let start = process_cpu();
                    for _ in 0..n {
                        bench.one().await.expect("request");
                        // A cache hit never waits, so without this the tasks the request
                        // handed work to (the log's writer) would not run on this thread.
                        tokio::task::yield_now().await;
                    }
                    process_cpu().saturating_sub(start)
                })
            })
        });
        if let Some(stats) = bench.log_stats() {
            // Not a timing: the writer must have kept every row (issue 17, the request log).
            assert_eq!(
                stats.dropped,
                0,
                "{}: log rows dropped: {stats:?}",
                setup.name()
            );
        }
        rt.block_on(bench.gw.shutdown());
    }
    group.finish();
}

fn config() -> Criterion<Cpu> {
    Criterion::default()
        .with_measurement(Cpu)
        .warm_up_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = request
}
criterion_main!(benches);
