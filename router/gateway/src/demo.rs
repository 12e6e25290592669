//! `switchyard demo`: the simulator and the gateway in one process, configured with one model of
//! each provider kind (`data/demo.toml`), so the whole product runs with no API keys.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{self, Config, Vars};
use crate::state::Gateway;
use switchyard_sim::{self as sim, SimHandle};

/// The demo configuration text (also usable with `serve` against a separate `switchyard sim`).
pub const DEMO_CONFIG: &str = include_str!("../../data/demo.toml");

/// The demo config with its simulator URL set.
pub fn config(sim_url: &str) -> Result<Config, config::ConfigErrors> {
    let mut vars = Vars::from_env();
    vars.set("SWITCHYARD_SIM_URL", sim_url);
    config::load_str(DEMO_CONFIG, &vars)
}

/// Start the simulator on an ephemeral loopback port and build a gateway on top of it.
pub async fn start() -> Result<(SimHandle, Arc<Gateway>), String> {
    // The demo's [sim] table comes from the same file; the URL is not known yet, so parse it
    // with a placeholder first.
    let sim_config = config("http://127.0.0.1:0")
        .map_err(|e| e.to_string())?
        .sim
        .clone();
    let sim = sim::spawn(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let url = format!("http://{}", sim.addr);
    let cfg = config(&url).map_err(|e| e.to_string())?;
    let gw = Gateway::connect(cfg).await?;
    Ok((sim, gw))
}
