//! Administrative endpoints, each needing a permission its role must grant
//! ([`crate::api::auth::Staff`]). Every change is audited with the actor's name.

mod migrate;
mod ops;
mod pools;
mod suspend;
mod users;

pub(crate) use migrate::*;
pub(crate) use ops::*;
pub(crate) use pools::*;
pub(crate) use suspend::*;
pub(crate) use users::*;

use axum::Json;

use super::{ApiErr, AppState};
use crate::store::User;

type Res<T> = Result<Json<T>, ApiErr>;

/// Records an administrator's change.
async fn audit(state: &AppState, admin: &User, what: String) -> Result<(), ApiErr> {
    let what = oriel_protocol::text::clip(&what, 1024);
    state
        .store
        .audit(&admin.name, "admin_change", &what)
        .await?;
    Ok(())
}
