//! `GET /ai/alerts`: the alerts firing now (`active`, oldest first) and the last transitions
//! (`recent`, newest first, fired and resolved) of the alert engine (`live/alerts.rs`). The same
//! access as `/ai/performance`: a virtual key (a `dashboard` key too) or the admin key.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::live::alerts::AlertsView;
use crate::state::Gateway;

pub async fn list(State(gw): State<Arc<Gateway>>) -> Json<AlertsView> {
    Json(gw.alerts.view())
}
