//! Moves in doubt: a live migration whose broker never heard how it ended (its host's
//! answer timed out, or the broker went away mid-move) stays open in the store, and the
//! desktop stays marked as moving. The hosts' heartbeats settle it: the destination
//! reporting the desktop means it moved (a destination runs a VM only once the source
//! has let go of its copy); after long enough, the source still reporting it means it
//! stayed, and neither reporting it means it is lost.

use oriel_protocol::host_link::DesktopReport;

use crate::store::{OpenMove, Store};

/// How long after a move began its destination's report settles it: past the broker's
/// wait for the host's answer, so a move whose broker still waits is left to it.
pub const SETTLED_BY_DESTINATION_MS: i64 = 40_000;
/// How long a move may stay in doubt before its source's report settles it: longer
/// than a migration runs (a large guest over a slow link), since a source reports the
/// desktop until the very end of a move.
pub const GIVEN_UP_MS: i64 = 600_000;

/// Settles the open moves to or from host `host_id` that its `reports` (the desktops
/// it runs) decide, at `now_ms`. Returns what was settled, for the log.
pub async fn settle(
    store: &Store,
    host_id: &str,
    reports: &[DesktopReport],
    now_ms: i64,
) -> anyhow::Result<Vec<String>> {
    let mut settled = Vec::new();
    for OpenMove {
        move_id,
        started_ms,
        desktop,
    } in store.open_moves_touching(host_id).await?
    {
        let age = now_ms - started_ms;
        let here = reports.iter().any(|r| r.name == desktop.name);
        let destination = desktop.migrating_to.as_deref() == Some(host_id)
            && desktop.host_id.as_deref() != Some(host_id);
        let outcome = if destination {
            (here && age > SETTLED_BY_DESTINATION_MS).then_some(Ok(None))
        } else if age > GIVEN_UP_MS {
            Some(Err(if here {
                "in doubt, then found still on its source"
            } else {
                "in doubt, then found on neither host"
            }))
        } else {
            None
        };
        let Some(outcome) = outcome else { continue };
        let what = match outcome {
            Ok(_) => format!(
                "move of desktop {} settled: it runs on {host_id}",
                desktop.name
            ),
            Err(why) => format!("move of desktop {} settled: {why}", desktop.name),
        };
        store.end_move(&move_id, &desktop.id, outcome).await?;
        store.audit("broker", "migration", &what).await?;
        settled.push(what);
    }
    Ok(settled)
}
