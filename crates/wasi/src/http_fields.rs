//! Bounds on the HTTP header maps a guest holds in host memory.
//!
//! wasi:http lets a guest make `fields` (header maps) as often as it likes,
//! and each lives in host memory: 10,000 maps of 100 KB each are a
//! gigabyte. Two bounds keep that in check:
//!
//! - each map the guest fills holds at most [`FIELD_SIZE_LIMIT`] bytes
//!   (wasmtime-wasi-http's per-map limit, which counts the in-memory size
//!   of names and values);
//! - the guest holds at most [`MAX_HEADER_MAPS`] maps at once, counting
//!   `fields` resources and the requests and responses it built (which
//!   carry the maps it moved into them). Making one more (`fields`'
//!   constructor, `from-list`, `clone`) is refused with a trap that says
//!   so. Requests already sent are bounded by the in-flight limit of the
//!   gate (`warden_net::MAX_HTTP_IN_FLIGHT`).
//!
//! So a guest's header maps stay under about `MAX_HEADER_MAPS *
//! FIELD_SIZE_LIMIT` (16 MiB), whatever it does. This is done by shadowing
//! the three creating functions of wasi:http 0.2 and 0.3 in the linker:
//! each counts the maps in the guest's resource table, then calls
//! wasmtime-wasi-http's own implementation.

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

/// The most bytes (names and values, as wasmtime-wasi-http counts them)
/// one header map the guest fills may hold.
pub const FIELD_SIZE_LIMIT: usize = 64 * 1024;

/// The most header maps (fields, and requests and responses the guest
/// built) a guest may hold at once.
pub const MAX_HEADER_MAPS: usize = 256;

/// How many header maps the guest holds now.
fn held(table: &mut ResourceTable) -> usize {
    use wasmtime_wasi_http::{p2::types as p2t, p3};
    table
        .iter_mut()
        .filter(|entry| {
            let entry: &dyn std::any::Any = &**entry;
            entry.is::<FieldMap>()
                || entry.is::<p2t::HostOutgoingRequest>()
                || entry.is::<p2t::HostOutgoingResponse>()
                || entry.is::<p3::Request>()
                || entry.is::<p3::Response>()
        })
        .count()
}

/// Refuse a new map when the guest holds [`MAX_HEADER_MAPS`] already.
fn charge(table: &mut ResourceTable) -> wasmtime::Result<()> {
    if held(table) >= MAX_HEADER_MAPS {
        return Err(wasmtime::Error::msg(format!(
            "the guest holds {MAX_HEADER_MAPS} HTTP header maps (fields, requests, responses) already, the most Warden allows; drop some first"
        )));
    }
    Ok(())
}

/// Shadow the creating `fields` functions of wasi:http 0.2 (and 0.3 when
/// `p3`) with counting ones. The linker must allow shadowing.
pub(crate) fn link<T: WasiHttpView + 'static>(
    linker: &mut Linker<T>,
    p3: bool,
) -> wasmtime::Result<()> {
    {
        use wasmtime_wasi_http::p2::bindings::http::types::{self as t, Host, HostFields};
        let mut i = linker.instance("wasi:http/types@0.2.12")?;
        i.func_wrap(
            "[constructor]fields",
            |mut store: wasmtime::StoreContextMut<'_, T>, (): ()| {
                let mut view = store.data_mut().http();
                charge(view.table)?;
                Ok((HostFields::new(&mut view)?,))
            },
        )?;
        i.func_wrap(
            "[static]fields.from-list",
            |mut store: wasmtime::StoreContextMut<'_, T>, (entries,): (Vec<(String, Vec<u8>)>,)| {
                let mut view = store.data_mut().http();
                charge(view.table)?;
                let made: Result<Resource<FieldMap>, t::HeaderError> =
                    match HostFields::from_list(&mut view, entries) {
                        Ok(f) => Ok(f),
                        Err(e) => Err(Host::convert_header_error(&mut view, e)?),
                    };
                Ok((made,))
            },
        )?;
        i.func_wrap(
            "[method]fields.clone",
            |mut store: wasmtime::StoreContextMut<'_, T>, (this,): (Resource<FieldMap>,)| {
                let mut view = store.data_mut().http();
                charge(view.table)?;
                Ok((HostFields::clone(&mut view, this)?,))
            },
        )?;
    }
    if p3 {
        use wasmtime_wasi_http::p3::bindings::http::types::{self as t, HostFields};
        let mut i = linker.instance("wasi:http/types@0.3.0")?;
        i.func_wrap(
            "[constructor]fields",
            |mut store: wasmtime::StoreContextMut<'_, T>, (): ()| {
                let mut view = store.data_mut().http();
                charge(view.table)?;
                Ok((HostFields::new(&mut view)?,))
            },
        )?;
        i.func_wrap(
            "[static]fields.from-list",
            |mut store: wasmtime::StoreContextMut<'_, T>, (entries,): (Vec<(String, Vec<u8>)>,)| {
                let mut view = store.data_mut().http();
                charge(view.table)?;
                let made: Result<Resource<FieldMap>, t::HeaderError> =
                    match HostFields::from_list(&mut view, entries) {
                        Ok(f) => Ok(f),
                        Err(e) => Err(e.downcast()?),
                    };
                Ok((made,))
            },
        )?;
        i.func_wrap(
            "[method]fields.clone",
            |mut store: wasmtime::StoreContextMut<'_, T>, (this,): (Resource<FieldMap>,)| {
                let mut view = store.data_mut().http();
                charge(view.table)?;
                Ok((HostFields::clone(&mut view, this)?,))
            },
        )?;
    }
    Ok(())
}
