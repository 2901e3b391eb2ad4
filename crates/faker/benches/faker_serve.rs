//! Throughput of the faker: 1 000 000 devices (or `FAKER_BENCH_DEVICES`) generated and
//! serialised without HTTP, then served in pages of 1000 to one client in the same process
//! over loopback, in churn epoch 0 and in a churned epoch. Prints numbers; asserts only that
//! every device arrived once.
//!
//! `cargo bench --workspace --bench faker_serve`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use serde::Deserialize;
use serde::de::IgnoredAny;
use sr_faker::{Config, Faker, Generator};

#[derive(Deserialize)]
struct Page {
    data: PageData,
}

#[derive(Deserialize)]
struct PageData {
    count: u64,
    next: u64,
    total: u64,
    results: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
    #[serde(flatten)]
    _rest: IgnoredAny,
}

#[derive(Deserialize)]
struct Token {
    data: TokenData,
}

#[derive(Deserialize)]
struct TokenData {
    access_token: String,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("FAKER_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("faker bench: {n} devices, pages of 1000");

    // The generator alone: build every device, then build and serialise every device.
    let g = Generator::new(1, n, 0.05);
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(g.device(i, 0));
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "generator, build only: {:.0} devices/s ({:.2} us/device)",
        n as f64 / s,
        s * 1e6 / n as f64
    );
    let t = Instant::now();
    let mut bytes = 0u64;
    for i in 0..n {
        bytes += serde_json::to_vec(&g.device(i, 0).unwrap())?.len() as u64;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "generator, build + serialise (no HTTP): {:.0} devices/s, {:.1} MB/s of JSON, {:.2} s, {:.0} B/device",
        n as f64 / s,
        mb(bytes) / s,
        s,
        bytes as f64 / n as f64
    );

    let faker = Faker::start(Config::local(n)).await?;
    let base = faker.base_url();
    let http = reqwest::Client::new();
    let token: Token = http
        .post(format!("{base}/api/v1/access_token/"))
        .form(&[("secret_key", faker.secret_key())])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = token.data.access_token;

    for epoch_label in ["epoch 0", "churned epoch (5% of pairs swapped)"] {
        if epoch_label != "epoch 0" {
            faker.advance_churn();
        }
        let t = Instant::now();
        let (mut from, mut devices, mut bytes, mut pages, mut id_sum) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        loop {
            let body = http
                .get(format!("{base}/api/v1/search/"))
                .query(&[
                    ("aql", "in:devices"),
                    ("length", "1000"),
                    ("from", &from.to_string()),
                ])
                .header("Authorization", &token)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            bytes += body.len() as u64;
            let page: Page = serde_json::from_slice(&body)?;
            assert_eq!(page.data.total, n);
            assert_eq!(page.data.count, page.data.results.len() as u64);
            devices += page.data.count;
            id_sum += page.data.results.iter().map(|d| d.id).sum::<u64>();
            pages += 1;
            if page.data.next == 0 {
                break;
            }
            from = page.data.next;
        }
        let s = t.elapsed().as_secs_f64();
        assert_eq!(devices, n, "every device once");
        assert_eq!(id_sum, n * (n + 1) / 2, "ids 1..=n");
        println!(
            "HTTP, {epoch_label}: {:.0} devices/s, {:.1} MB/s, {pages} pages in {:.2} s ({:.2} ms/page)",
            devices as f64 / s,
            mb(bytes) / s,
            s,
            s * 1000.0 / pages as f64
        );
    }
    let stats = faker.stats();
    println!(
        "served: {} pages, {} devices, {} tokens, {} unauthorized",
        stats.pages_served, stats.devices_served, stats.tokens_issued, stats.unauthorized
    );
    faker.stop().await?;
    Ok(())
}
