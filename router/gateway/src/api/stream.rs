//! `GET /ai/stream`: the live feed over a WebSocket (snapshots once a second, events as they
//! happen; `live/ws.rs`), and `POST /dashboard/session`: the cookie a browser watches it with.
//! Who may do either was settled by `admit` (the admin key, a `dashboard` key, a session for
//! the feed; anyone in `open` mode), which hands the handler the `Viewer`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::ApiError;
use crate::live::sessions::{self, Viewer};
use crate::live::ws::{self, Feed, Slot};
use crate::server::Draining;
use crate::state::Gateway;

pub async fn stream(
    State(gw): State<Arc<Gateway>>,
    viewer: Option<Extension<Viewer>>,
    draining: Option<Extension<Draining>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Some(Extension(viewer)) = viewer else {
        return Err(ApiError::internal(
            "the live feed was reached without admission",
        ));
    };
    let upgrade = upgrade.map_err(|e| ApiError {
        status: StatusCode::UPGRADE_REQUIRED,
        message: format!("GET /ai/stream is a WebSocket: {e}"),
        kind: "invalid_request_error",
        param: None,
        code: Some("websocket_required"),
        retry_after: None,
    })?;
    let Some(slot) = Slot::take(&gw.live) else {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "{} live feeds are open already, the most this gateway serves",
                ws::MAX_FEEDS
            ),
            kind: "api_error",
            param: None,
            code: Some("too_many_feeds"),
            retry_after: Some(std::time::Duration::from_secs(5)),
        });
    };
    let feed = Feed {
        live: gw.live.clone(),
        viewer,
        abort: gw.abort.clone(),
        draining: draining.map(|Extension(d)| d),
        slot,
    };
    Ok(upgrade
        .max_message_size(ws::MAX_CLIENT_MESSAGE)
        .max_frame_size(ws::MAX_CLIENT_MESSAGE)
        .max_write_buffer_size(ws::MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| ws::serve(socket, feed)))
}

/// `204` with the session cookie (`Set-Cookie`), for the viewer `admit` found in
/// `Authorization`.
pub async fn session(
    State(gw): State<Arc<Gateway>>,
    viewer: Option<Extension<Viewer>>,
) -> Result<Response, ApiError> {
    let Some(Extension(viewer)) = viewer else {
        return Err(ApiError::internal(
            "a session was asked for without admission",
        ));
    };
    let id = gw
        .live
        .sessions
        .open(viewer, Instant::now())
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::NO_CONTENT,
        [
            (header::SET_COOKIE, sessions::set_cookie(&id)),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}
