//! Delivery tasks: one per subscribed event, making its attempts (retried
//! with backoff, bounded per target, guarded by the target's circuit) until
//! it succeeds or gives up, then handing its outcome to the committer.

use super::*;

/// Resolves once the runner stops.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Why an event ended without success.
enum GaveUp {
    /// The target refused it for good.
    Permanent,
    /// Every attempt failed.
    Exhausted,
    /// The event waited longer than `give_up_after`.
    TimedOut,
}

pub(super) async fn deliver(
    shared: Arc<Shared>,
    event: Arc<Envelope>,
    record: Record,
    _in_flight: OwnedSemaphorePermit,
) {
    let config = &shared.config;
    let policy = &config.retry;
    let target_name = shared.effect.target(&event);
    let target = shared.target(&target_name);
    let idempotency_key = format!("{}:{}", config.name, event.id);
    let began = Instant::now();
    let mut errors = Vec::new();
    let mut attempt = 0u32;
    let mut last_status = None;
    let mut last_latency = Duration::ZERO;
    let result = loop {
        if let Some(wait) = target.breaker.admit(Instant::now()) {
            if began.elapsed() + wait > policy.give_up_after {
                errors
                    .push(json!({"attempt": attempt, "error": "the target's circuit stayed open"}));
                break Err(GaveUp::TimedOut);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => continue,
                () = stopped(shared.stop.clone()) => return,
            }
        }
        let permit = tokio::select! {
            p = target.permits.clone().acquire_owned() => p,
            () = stopped(shared.stop.clone()) => return,
        };
        attempt += 1;
        let call = Call {
            event: event.clone(),
            idempotency_key: idempotency_key.clone(),
            attempt,
        };
        let started = Instant::now();
        let answer = tokio::select! {
            a = tokio::time::timeout(policy.attempt_timeout, shared.effect.attempt(call)) => a,
            () = stopped(shared.stop.clone()) => return,
        };
        drop(permit);
        last_latency = started.elapsed();
        target.attempts.fetch_add(1, Ordering::Relaxed);
        target
            .attempt_micros
            .fetch_add(last_latency.as_micros() as u64, Ordering::Relaxed);
        let failure = match answer {
            Ok(Ok(done)) => {
                target.breaker.success();
                last_status = done.status;
                break Ok(done);
            }
            Ok(Err(f)) => f,
            Err(_) => Failure::transient(format!(
                "no answer within {} ms",
                policy.attempt_timeout.as_millis()
            )),
        };
        target.failures.fetch_add(1, Ordering::Relaxed);
        if failure.target_unhealthy {
            target.breaker.failure(Instant::now());
        } else {
            target.breaker.success();
        }
        last_status = failure.status;
        errors.push(json!({
            "attempt": attempt,
            "error": failure.message,
            "status": failure.status,
            "latency_ms": last_latency.as_millis() as u64,
        }));
        if !failure.retryable {
            break Err(GaveUp::Permanent);
        }
        if attempt >= policy.max_attempts {
            break Err(GaveUp::Exhausted);
        }
        let wait = policy.backoff(attempt).max(
            failure
                .retry_after
                .unwrap_or_default()
                .min(policy.max_backoff),
        );
        if began.elapsed() + wait > policy.give_up_after {
            break Err(GaveUp::TimedOut);
        }
        shared.counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(shared.stop.clone()) => return,
        }
    };
    let source = record.position().to_string();
    let mut data = json!({
        "runner": config.name,
        "target": target_name,
        "attempts": attempt,
        "status": last_status,
        "latency_ms": last_latency.as_millis() as u64,
        "elapsed_ms": began.elapsed().as_millis() as u64,
        "errors": errors,
        "source": source,
    });
    let (outcome, dead_letter) = match result {
        Ok(_) => {
            shared.counters.delivered.fetch_add(1, Ordering::Relaxed);
            (event.event(&config.delivered_action(), data), None)
        }
        Err(why) => {
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            shared.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
            data["reason"] = json!(match why {
                GaveUp::Permanent => "permanent",
                GaveUp::Exhausted => "attempts exhausted",
                GaveUp::TimedOut => "gave up waiting",
            });
            data["dead_letter_topic"] = json!(config.dead_letter_topic);
            let letter = json!({"event": &*event, "outcome": &data});
            let failed = event.reject(&config.failed_action(), data);
            (failed, Some(letter))
        }
    };
    let correlation = record
        .header(CORRELATION_HEADER)
        .cloned()
        .unwrap_or_else(|| Bytes::from(source.clone()));
    let to_record = |value: Vec<u8>| {
        ProducerRecord::value(value)
            .with_key(event.record_key())
            .with_header(SOURCE_HEADER, source.clone())
            .with_header(CAUSATION_HEADER, source.clone())
            .with_header(CORRELATION_HEADER, correlation.clone())
    };
    let outcome = to_record(serde_json::to_vec(&outcome).unwrap_or_default());
    let dead_letter = dead_letter.map(|l| to_record(serde_json::to_vec(&l).unwrap_or_default()));
    shared.finish(record.partition, record.offset, outcome, dead_letter);
}
