//! What a component imports, checked before it is instantiated: against
//! the operator's world (an import outside it is refused, naming it), and
//! against what is provided (Warden's WASI and built-ins, and the plugs
//! composed in), so that every import nothing provides is named in one
//! error with what would satisfy it, never wasmtime's linker text alone.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceType};

use crate::{HostError, ImportRemedy, MissingImport};

/// The interface names a component imports, in its order (an import
/// that `implements` an interface under a label is named by the
/// interface).
pub(crate) fn names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, ext)| ext.implements.unwrap_or(name).to_string())
        .collect()
}

/// Refuse a component that imports what `world` does not allow.
pub(crate) fn check_world(
    path: &std::path::Path,
    world: Option<&warden_policy::world::World>,
    engine: &Engine,
    component: &Component,
) -> Result<(), HostError> {
    let Some(world) = world else {
        return Ok(());
    };
    let names = names(engine, component);
    let refused = world.refused(names.iter().map(String::as_str));
    if refused.is_empty() {
        return Ok(());
    }
    Err(HostError::OutsideWorld {
        path: path.to_path_buf(),
        refused: refused.into_iter().map(str::to_string).collect(),
    })
}

/// The error for a component `linker` could not pre-instantiate
/// (`failure`): every import nothing provides, found by satisfying each
/// wasmtime names with a stand-in that traps on a copy of the linker and
/// asking again; or, if the failure is about something else, the failure.
pub(crate) fn explain<T: 'static>(
    path: &std::path::Path,
    engine: &Engine,
    linker: &Linker<T>,
    component: &Component,
    failure: wasmtime::Error,
) -> HostError {
    let ty = component.component_type();
    let count = ty.imports(engine).count();
    let mut probe = linker.clone();
    probe.allow_shadowing(true);
    let mut missing: Vec<MissingImport> = Vec::new();
    let mut err = failure;
    let first = format!("{err:#}");
    // Each round names one more import; a round that names none, or one
    // already named, ends it.
    for _ in 0..=count {
        let Some(name) = unsatisfied(&err) else {
            break;
        };
        if missing.iter().any(|m| m.name == name) {
            break;
        }
        let Some(item) = ty.get_import(engine, &name) else {
            break;
        };
        let shown = item.implements.unwrap_or(&name).to_string();
        missing.push(MissingImport {
            remedy: remedy(&shown),
            name: shown,
            detail: err.root_cause().to_string(),
        });
        if stand_in(&mut probe.root(), &name, &item.ty, engine).is_err() {
            break;
        }
        match probe.instantiate_pre(component) {
            Ok(_) => break,
            Err(e) => err = e,
        }
    }
    if missing.is_empty() {
        return HostError::Start {
            path: path.to_path_buf(),
            reason: first,
        };
    }
    HostError::MissingImports {
        path: path.to_path_buf(),
        missing,
    }
}

/// The import wasmtime's linker found no match for, from its message
/// ("component imports instance `NAME`, but a matching implementation was
/// not found in the linker").
fn unsatisfied(err: &wasmtime::Error) -> Option<String> {
    let text = err.to_string();
    let rest = text.strip_prefix("component imports ")?;
    let (_, rest) = rest.split_once('`')?;
    let (name, rest) = rest.split_once('`')?;
    rest.contains("a matching implementation was not found")
        .then(|| name.to_string())
}

/// What could satisfy an import, by its interface.
fn remedy(name: &str) -> ImportRemedy {
    if name.starts_with("wasi:config/") {
        ImportRemedy::Config
    } else if name.starts_with("wasi:keyvalue/") {
        ImportRemedy::KeyValue
    } else {
        ImportRemedy::Plug
    }
}

/// Define `name` in `linker` as something of type `item` that traps when
/// used (only ever on a probing copy).
fn stand_in<T: 'static>(
    linker: &mut LinkerInstance<'_, T>,
    name: &str,
    item: &ComponentItem,
    engine: &Engine,
) -> wasmtime::Result<()> {
    match item {
        ComponentItem::ComponentFunc(f) if f.async_() => {
            linker.func_new_concurrent(name, |_, _, _, _| {
                Box::pin(async { wasmtime::bail!("a stand-in for an import nothing provides") })
            })
        }
        ComponentItem::ComponentFunc(_) => linker.func_new(name, |_, _, _, _| {
            wasmtime::bail!("a stand-in for an import nothing provides")
        }),
        ComponentItem::ComponentInstance(instance) => {
            let mut inner = linker.instance(name)?;
            for (export, ext) in instance.exports(engine) {
                stand_in(&mut inner, export, &ext.ty, engine)?;
            }
            Ok(())
        }
        ComponentItem::Resource(_) => {
            linker.resource(name, ResourceType::host::<StandIn>(), |_, _| Ok(()))
        }
        ComponentItem::Type(_) => Ok(()),
        ComponentItem::CoreFunc(_) | ComponentItem::Module(_) | ComponentItem::Component(_) => {
            wasmtime::bail!("cannot stand in for {name}")
        }
    }
}

/// The host type of a stand-in resource.
struct StandIn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtimes_missing_import_message_names_the_import() {
        let e = wasmtime::Error::msg("function implementation is missing").context(
            "component imports instance `example:kv/store@0.1.0`, but a matching implementation was not found in the linker",
        );
        assert_eq!(unsatisfied(&e).as_deref(), Some("example:kv/store@0.1.0"));
        for other in [
            "cross-`Engine` instantiation is not currently supported",
            "component imports instance `x`, but something else went wrong",
        ] {
            assert_eq!(unsatisfied(&wasmtime::Error::msg(other)), None, "{other}");
        }
    }

    #[test]
    fn config_and_keyvalue_imports_name_their_built_ins() {
        assert_eq!(remedy("wasi:config/store@0.2.0-rc.1"), ImportRemedy::Config);
        assert_eq!(
            remedy("wasi:keyvalue/atomics@0.2.0-draft"),
            ImportRemedy::KeyValue
        );
        assert_eq!(remedy("example:kv/store"), ImportRemedy::Plug);
    }
}
