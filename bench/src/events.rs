//! Scenario 6, second half: events stored per second. `n` valid OCSF events are published to
//! a fresh events stream first; then the release `sr-events` starts on its own schema and is
//! timed from its first stored event to its last (so process start and migrations are not
//! counted).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use chrono::{DateTime, Utc};
use sr_core::TenantId;
use sr_core::ocsf::{Activity, OcsfEvent, ResourceRef};
use sr_runtime::jetstream::{NatsConfig, StreamKind, headers};

use crate::report::{Goal, Row};
use crate::stack::{Env, Stack, metric_sum, until};

const S6: &str = "6 events";
const TENANTS: usize = 16;
const PUBLISH_WINDOW: usize = 4096;

fn sample_event(tenant: TenantId, i: usize, now: DateTime<Utc>) -> OcsfEvent {
    let activity = [Activity::Create, Activity::Update, Activity::Delete][i % 3];
    let name = format!("source-{}", i / 3);
    OcsfEvent::lifecycle(
        tenant,
        "sr-identity",
        activity,
        &ResourceRef {
            resource_type: "integration_source",
            id: format!("{:08x}-bench-source", i / 3),
            name: &name,
        },
        "Integration source",
        match activity {
            Activity::Create => "create",
            Activity::Update => "update",
            Activity::Delete => "delete",
        },
        serde_json::json!({ "source_type": "armis", "enabled": true, "changed": ["endpoint"] }),
        now - chrono::Duration::milliseconds(i64::try_from(i).unwrap_or(0)),
    )
}

/// Scenario 6 (events) for `n` events.
pub async fn store(env: &Env, n: usize, rows: &mut Vec<Row>) -> Result<()> {
    let mut stack = Stack::new(env, "events")?;
    let result = store_in(&mut stack, env, n, rows).await;
    let cleaned = stack.cleanup().await;
    result.and(cleaned)
}

async fn store_in(stack: &mut Stack, env: &Env, n: usize, rows: &mut Vec<Row>) -> Result<()> {
    ensure!(n > 0, "no events to store");
    let cfg = NatsConfig {
        url: env.nats_url.clone(),
        subject_prefix: stack.prefix.clone(),
        ..NatsConfig::default()
    };
    let js = async_nats::jetstream::new(stack.nats().await?);
    sr_runtime::jetstream::ensure_stream(&js, &cfg, StreamKind::Events).await?;
    let subjects = stack.subjects();
    let tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::random()).collect();
    let now = Utc::now();
    let published = Instant::now();
    let mut acks = VecDeque::with_capacity(PUBLISH_WINDOW);
    for i in 0..n {
        let tenant = tenants[i % TENANTS];
        let event = sample_event(tenant, i, now);
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::MSG_ID, event.metadata.uid.to_string().as_str());
        h.insert(headers::ORIGIN, "sr-identity");
        acks.push_back(
            js.publish_with_headers(
                subjects.events(tenant, "integration_source"),
                h,
                serde_json::to_vec(&event)?.into(),
            )
            .await
            .map_err(|e| anyhow!("{e}"))?,
        );
        if acks.len() >= PUBLISH_WINDOW
            && let Some(ack) = acks.pop_front()
        {
            ack.await.map_err(|e| anyhow!("{e}"))?;
        }
    }
    for ack in acks {
        ack.await.map_err(|e| anyhow!("{e}"))?;
    }
    let published = published.elapsed();

    stack
        .start(
            "sr-events",
            "SR_EVENTS",
            Some("events"),
            true,
            &[
                ("SR_EVENTS__API__TOKEN".to_owned(), "bench".to_owned()),
                (
                    "SR_EVENTS__RETENTION__INTERVAL".to_owned(),
                    "24h".to_owned(),
                ),
            ],
        )
        .await?;
    let target = n as f64;
    let stack_ref = &*stack;
    let progress = || async move {
        let m = stack_ref.metrics("sr-events").await?;
        Ok::<_, anyhow::Error>((
            metric_sum(&m, "sr_events_stored_total", ""),
            metric_sum(&m, "sr_events_duplicates_total", ""),
        ))
    };
    let timeout = Duration::from_secs(120) + Duration::from_millis(n as u64);
    let (first_at, first_count) = until(
        "the first stored event",
        timeout,
        Duration::from_millis(10),
        || async {
            let (stored, dups) = progress().await?;
            Ok((stored + dups > 0.0).then(|| (Instant::now(), stored + dups)))
        },
    )
    .await?;
    let stored = until(
        "every event to be stored",
        timeout,
        Duration::from_millis(20),
        || async {
            let (stored, dups) = progress().await?;
            Ok((stored + dups >= target).then_some(stored))
        },
    )
    .await?;
    let took = first_at.elapsed();
    ensure!(stored >= target, "stored {stored} of {n} events");
    let rate = (target - first_count) / took.as_secs_f64();
    rows.push(
        Row::target(
            S6,
            "events stored per second",
            rate,
            "events/s",
            Goal::AtLeast,
            80_000.0,
        )
        .note(format!(
            "{n} events backlog ({:.0}/s published), first to last stored in {:.2} s",
            n as f64 / published.as_secs_f64(),
            took.as_secs_f64()
        )),
    );
    Ok(())
}
