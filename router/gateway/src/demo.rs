//! `switchyard demo`: the simulator and the gateway in one process, configured with one model of
//! each provider kind (`data/demo.toml`), so the whole product runs with no API keys.
//! `traffic` sends it requests when asked (`--traffic`), so the dashboard has something to show.

pub mod traffic;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{self, Config, Vars};
use crate::state::Gateway;
use switchyard_sim::{self as sim, SimHandle};

/// The demo configuration text (also usable with `serve` against a separate `switchyard sim`).
pub const DEMO_CONFIG: &str = include_str!("../../data/demo.toml");

/// The demo config with its simulator URL set.
pub fn config(sim_url: &str) -> Result<Config, config::ConfigErrors> {
    config_with(sim_url, None)
}

/// The demo config with `overrides` (TOML text) merged over it, table by table.
pub fn config_with(sim_url: &str, overrides: Option<&str>) -> Result<Config, config::ConfigErrors> {
    let mut vars = Vars::from_env();
    vars.set("SWITCHYARD_SIM_URL", sim_url);
    let mut doc = config::parse_toml(DEMO_CONFIG)?;
    if let Some(text) = overrides {
        config::merge_toml(&mut doc, config::parse_toml(text)?);
    }
    config::load_table(doc, &vars)
}

/// Start the simulator on an ephemeral loopback port and build a gateway on top of it, with
/// `overrides` (TOML text, e.g. `demo --config`) merged over the demo's config.
pub async fn start(overrides: Option<&str>) -> Result<(SimHandle, Arc<Gateway>), String> {
    // The demo's [sim] table comes from the same file; the URL is not known yet, so parse it
    // with a placeholder first.
    let sim_config = config_with("http://127.0.0.1:0", overrides)
        .map_err(|e| e.to_string())?
        .sim
        .clone();
    let sim = sim::spawn(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let url = format!("http://{}", sim.addr);
    let cfg = config_with(&url, overrides).map_err(|e| e.to_string())?;
    let gw = Gateway::connect(cfg).await?;
    Ok((sim, gw))
}
