//! Hot reload. The policy and schema directories are re-read on a short
//! interval; when their content hash changes and the next read agrees, a
//! new snapshot is built and swapped in. A broken edit keeps the last good
//! snapshot, is logged with its problems, and counted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{load::build, PolicyHandle, PolicySources, SourceFiles};
use crate::metrics::Metrics;

/// Polls `sources` every `interval` until `shutdown` completes.
pub async fn watch(
    sources: PolicySources,
    handle: PolicyHandle,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // The revision last looked at, applied or not, so a broken edit is
    // reported once rather than on every tick.
    let mut seen: Arc<str> = handle.load().revision.clone();
    // A revision read once, waiting for a second read to confirm it.
    let mut pending: Option<Arc<str>> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let src = sources.clone();
        let read = tokio::task::spawn_blocking(move || SourceFiles::read(&src)).await;
        let files = match read {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                let revision: Arc<str> = format!("unreadable:{e}").into();
                if revision != seen {
                    tracing::error!(error = %e, "policy reload failed; keeping the last good policy set");
                    metrics.policy_reload_failures.inc();
                    seen = revision;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload task failed");
                continue;
            }
        };
        let revision: Arc<str> = files.revision().into();
        if revision == seen {
            pending = None;
            continue;
        }
        // Apply a new revision only once two reads in a row agree: an
        // editor (or `cp`) writing a file is seen half-written otherwise.
        if pending.as_ref() != Some(&revision) {
            pending = Some(revision);
            continue;
        }
        pending = None;
        seen = revision.clone();
        match build(&files, &sources) {
            Ok(snapshot) => {
                let old = handle.swap(Arc::new(snapshot));
                metrics.set_policy_revision(&revision);
                metrics.policy_reloads.inc();
                tracing::info!(from = %old.revision, to = %revision, "policy set reloaded");
            }
            Err(e) => {
                metrics.policy_reload_failures.inc();
                tracing::error!(
                    revision = %revision,
                    keeping = %handle.load().revision,
                    error = %e,
                    "policy reload rejected; keeping the last good policy set"
                );
            }
        }
    }
}
