//! Live ingest: bars per second into [`LiveFeatures`] on one core (issue 13 target: ≥ 50,000),
//! the bundled bars of every symbol in time order, as a feed delivers them (each bar checked,
//! placed, and its features computed over the last 61 bars).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use tradeserve_features::live::{Bar, LiveConfig, LiveFeatures};
use tradeserve_features::load_bars_csv;

fn feed() -> Vec<Bar> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/bars.csv");
    let all = load_bars_csv(&path).expect("bundled bars");
    let mut bars: Vec<Bar> = all
        .iter()
        .flat_map(|(symbol, b)| {
            (0..b.len()).map(move |i| Bar {
                symbol: symbol.clone(),
                end: OffsetDateTime::from_unix_timestamp(b.ts[i]).expect("bar time"),
                open: b.close[i],
                high: b.high[i],
                low: b.low[i],
                close: b.close[i],
                volume: b.volume[i],
            })
        })
        .collect();
    bars.sort_by(|a, b| (a.end, &a.symbol).cmp(&(b.end, &b.symbol)));
    bars
}

fn ingest(c: &mut Criterion) {
    let bars = feed();
    // What is measured is real work: every bar applied, none rejected.
    let check = LiveFeatures::new(LiveConfig::default());
    for bar in &bars {
        assert!(check.ingest(bar).is_ok(), "{bar:?}");
    }
    let mut group = c.benchmark_group("live_ingest");
    group.throughput(Throughput::Elements(bars.len() as u64));
    group.sample_size(10);
    group.bench_function("bundled_bars_in_time_order", |b| {
        b.iter(|| {
            let live = LiveFeatures::new(LiveConfig::default());
            for bar in &bars {
                let _ = live.ingest(bar);
            }
            live
        })
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
