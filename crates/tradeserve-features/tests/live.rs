//! The live feature source on the bundled bars: streamed in time order across symbols (as a
//! feed delivers them), every bar's features equal the replay's for the same bar time — the
//! replay being the batch computation the parity test holds to `training/features.py`;
//! freshness by the clock, duplicates idempotent, bad bars counted by reason and harmless.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tradeserve_core::ports::{FeatureError, FeatureSource};
use tradeserve_features::live::{Bar, Ingested, LiveConfig, LiveFeatures, Rejection};
use tradeserve_features::{MarketReplay, ReplayClock, SymbolBars, load_bars_csv};

fn bars_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/bars.csv")
}

/// Every bar of every symbol, ordered by end time (then symbol), as a feed sends them.
fn feed(all: &std::collections::BTreeMap<String, SymbolBars>) -> Vec<Bar> {
    let mut out: Vec<Bar> = all
        .iter()
        .flat_map(|(symbol, b)| {
            (0..b.len()).map(move |i| Bar {
                symbol: symbol.clone(),
                end: OffsetDateTime::from_unix_timestamp(b.ts[i]).unwrap(),
                open: b.close[i].clamp(b.low[i], b.high[i]),
                high: b.high[i],
                low: b.low[i],
                close: b.close[i],
                volume: b.volume[i],
            })
        })
        .collect();
    out.sort_by(|a, b| (a.end, &a.symbol).cmp(&(b.end, &b.symbol)));
    out
}

/// A clock the test moves.
fn clock(at: i64) -> (Arc<AtomicI64>, tradeserve_features::live::source::Clock) {
    let now = Arc::new(AtomicI64::new(at));
    let read = Arc::clone(&now);
    let clock =
        Arc::new(move || OffsetDateTime::from_unix_timestamp(read.load(Ordering::SeqCst)).unwrap());
    (now, clock)
}

#[tokio::test]
async fn streamed_bars_give_the_replays_features_for_every_bar() {
    let all = load_bars_csv(&bars_csv()).unwrap();
    let replay = MarketReplay::from_bars(&all, ReplayClock::Fixed(0));
    let bars = feed(&all);
    let config = LiveConfig {
        retain_bars: std::num::NonZeroUsize::new(100_000).unwrap(),
        ..LiveConfig::default()
    };
    let (_, clock) = clock(bars.last().unwrap().end.unix_timestamp());
    let live = LiveFeatures::with_clock(config, clock);
    for bar in &bars {
        assert_eq!(live.ingest(bar), Ok(Ingested::Appended), "{bar:?}");
    }
    let mut compared = 0;
    for (symbol, b) in &all {
        for (i, ts) in b.ts.iter().enumerate().skip(60) {
            let at = OffsetDateTime::from_unix_timestamp(*ts).unwrap();
            let want = replay.features(symbol, Some(at)).await.unwrap();
            let got = live.features(symbol, Some(at)).await.unwrap();
            assert_eq!(got, want, "{symbol} bar {i}");
            compared += 1;
        }
        // Before the first bar with features: no data, said plainly.
        let early = OffsetDateTime::from_unix_timestamp(b.ts[59]).unwrap();
        assert!(matches!(
            live.features(symbol, Some(early)).await,
            Err(FeatureError::NoData(_))
        ));
    }
    assert!(compared > 10_000, "{compared}");
    // The bars as a feed writes them are valid under the published schema.
    let schema = tradeserve_testkit::bar_schema();
    for bar in bars.iter().step_by(97) {
        let json = serde_json::to_value(bar).unwrap();
        assert!(schema.is_valid(&json), "{json}");
    }
    let mut bad = serde_json::to_value(&bars[0]).unwrap();
    bad["low"] = serde_json::json!(0);
    assert!(!schema.is_valid(&bad));
    let (accepted, duplicates, rejected) = live.counts();
    assert_eq!((accepted, duplicates), (bars.len() as u64, 0));
    assert!(rejected.values().all(|n| *n == 0));
}

#[tokio::test]
async fn stale_features_are_refused_with_their_age_and_fresh_ones_served() {
    let all = load_bars_csv(&bars_csv()).unwrap();
    let bars: Vec<Bar> = feed(&all)
        .into_iter()
        .filter(|b| b.symbol == "AAPL")
        .take(100)
        .collect();
    let newest = bars.last().unwrap().end.unix_timestamp();
    let (now, clock) = clock(newest + 30);
    let live = LiveFeatures::with_clock(LiveConfig::default(), clock);
    for bar in &bars[..59] {
        live.ingest(bar).unwrap();
    }
    // Fewer bars than the longest window: no features yet, at any time.
    for at in [None, Some(bars[58].end)] {
        match live.features("AAPL", at).await {
            Err(e @ FeatureError::WarmingUp { .. }) => assert_eq!(
                e.to_string(),
                "AAPL is warming up: 59 of the 61 bars the longest feature window needs"
            ),
            other => panic!("{other:?}"),
        }
    }
    for bar in &bars[59..] {
        live.ingest(bar).unwrap();
    }
    let fresh = live.features("AAPL", None).await.unwrap();
    assert_eq!(fresh.as_of.unix_timestamp(), newest);
    now.store(newest + 121, Ordering::SeqCst);
    match live.features("AAPL", None).await {
        Err(FeatureError::Stale { symbol, age, max }) => {
            assert_eq!(symbol, "AAPL");
            assert_eq!(
                (age, max),
                (Duration::from_secs(121), Duration::from_secs(120))
            );
        }
        other => panic!("expected stale, got {other:?}"),
    }
    // A point-in-time request reads history: not subject to freshness.
    let at = bars[80].end;
    assert_eq!(live.features("AAPL", Some(at)).await.unwrap().as_of, at);
    let status = live.status();
    assert_eq!(
        (status[0].symbol.as_str(), status[0].status),
        ("AAPL", "stale")
    );
    assert_eq!(status[0].bars, 40);
}

#[tokio::test]
async fn bad_bars_are_counted_by_reason_and_change_nothing() {
    let all = load_bars_csv(&bars_csv()).unwrap();
    let bars: Vec<Bar> = feed(&all)
        .into_iter()
        .filter(|b| b.symbol == "MSFT")
        .take(90)
        .collect();
    let (_, clock) = clock(bars.last().unwrap().end.unix_timestamp());
    let live = LiveFeatures::with_clock(LiveConfig::default(), clock);
    for bar in &bars {
        live.ingest(bar).unwrap();
    }
    let before = live.features("MSFT", None).await.unwrap();
    let newest = bars.last().unwrap().clone();
    let mut next = newest.clone();
    next.end += time::Duration::minutes(1);
    let spoiled: Vec<(Bar, Rejection)> = vec![
        (
            Bar {
                close: f64::NAN,
                ..next.clone()
            },
            Rejection::NotFinite,
        ),
        (
            Bar {
                low: -1.0,
                ..next.clone()
            },
            Rejection::NonPositivePrice,
        ),
        (
            Bar {
                high: next.low - 1.0,
                ..next.clone()
            },
            Rejection::HighBelowLow,
        ),
        (
            Bar {
                volume: -5.0,
                ..next.clone()
            },
            Rejection::NegativeVolume,
        ),
        (
            Bar {
                symbol: "no such".into(),
                ..next.clone()
            },
            Rejection::InvalidSymbol,
        ),
        (
            Bar {
                end: newest.end - time::Duration::seconds(630),
                ..next.clone()
            },
            Rejection::Late,
        ),
    ];
    for (bar, reason) in &spoiled {
        assert_eq!(live.ingest(bar), Err(*reason));
    }
    assert_eq!(live.ingest_json(b"{not json"), Err(Rejection::Malformed));
    let ahead = Bar {
        end: newest.end + time::Duration::minutes(2),
        ..next.clone()
    };
    assert_eq!(live.ingest(&ahead), Err(Rejection::Future));
    // A duplicate (same symbol and end) changes nothing, whatever its values.
    let dup = Bar {
        volume: newest.volume + 1.0,
        ..newest.clone()
    };
    assert_eq!(live.ingest(&dup), Ok(Ingested::Duplicate));
    assert_eq!(live.features("MSFT", None).await.unwrap(), before);
    let (accepted, duplicates, rejected) = live.counts();
    assert_eq!((accepted, duplicates), (90, 1));
    for (_, reason) in &spoiled {
        assert_eq!(rejected[reason], 1, "{reason:?}");
    }
    assert_eq!(rejected[&Rejection::Malformed], 1);
    assert_eq!(rejected[&Rejection::Future], 1);
    // The symbol is unharmed: the next good bar applies.
    assert_eq!(live.ingest(&next), Ok(Ingested::Appended));
}
