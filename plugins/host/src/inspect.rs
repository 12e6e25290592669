//! What a component imports and exports, and whether this host can run it.

use wasmtime::component::Component;

use crate::engine::PolicyEngine;
use crate::manifest::ABI;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub bytes: usize,
    pub sha256: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The `switchyard:policy` version the component was built against, if it names one.
    pub abi: Option<String>,
    /// Host functions it imports (`log`, `count-tokens`): the capabilities its manifest must grant.
    pub needs: Vec<String>,
    /// Whether it exports `evaluate` and names this host's ABI.
    pub compatible: bool,
}

pub fn inspect(engine: &PolicyEngine, wasm: &[u8]) -> Result<Inspection, String> {
    let component = Component::new(&engine.engine, wasm).map_err(|e| format!("{e:#}"))?;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&engine.engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    let exports: Vec<String> = ty
        .exports(&engine.engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    let host_import = imports.iter().find(|n| n.starts_with("switchyard:policy/"));
    let abi = host_import
        .and_then(|n| n.rsplit('@').next())
        .map(|v| format!("switchyard:policy@{v}"));
    let mut needs = Vec::new();
    if let Some(name) = host_import
        && let Some(ext) = ty.get_import(&engine.engine, name)
        && let wasmtime::component::types::ComponentItem::ComponentInstance(inst) = ext.ty
    {
        needs = inst
            .exports(&engine.engine)
            .filter(|(_, e)| {
                matches!(
                    e.ty,
                    wasmtime::component::types::ComponentItem::ComponentFunc(_)
                )
            })
            .map(|(n, _)| n.to_owned())
            .collect();
    }
    let compatible =
        exports.iter().any(|e| e == "evaluate") && abi.as_deref().is_none_or(|a| a == ABI);
    Ok(Inspection {
        bytes: wasm.len(),
        sha256: crate::engine::sha256_hex(wasm),
        imports,
        exports,
        abi,
        needs,
        compatible,
    })
}
