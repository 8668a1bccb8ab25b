use warden_wasi::{ComponentAbi, ComponentCtx, HasComponentCtx};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};
struct S(ComponentCtx);
impl WasiView for S {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.0.ctx()
    }
}
impl WasiHttpView for S {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.0.http()
    }
}
impl HasComponentCtx for S {
    fn component_ctx(&mut self) -> &mut ComponentCtx {
        &mut self.0
    }
}
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let mut c = Config::new();
    c.wasm_component_model(true)
        .wasm_component_model_async(true);
    let engine = Engine::new(&c).unwrap();
    let comp = Component::from_file(&engine, &path).unwrap();
    for (name, _) in comp.component_type().exports(&engine) {
        println!("  export {name}");
    }
    let mut linker: Linker<S> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi::p3::add_to_linker(&mut linker).unwrap();
    match linker.instantiate_pre(&comp) {
        Ok(_) => println!("step1: ok"),
        Err(e) => println!("step1: {e:#}"),
    }
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).unwrap();
    match linker.instantiate_pre(&comp) {
        Ok(_) => println!("step2: ok"),
        Err(e) => println!("step2: {e:#}"),
    }
    let mut linker: Linker<S> = Linker::new(&engine);
    warden_wasi::link_component(&mut linker, ComponentAbi::P3).unwrap();
    match linker.instantiate_pre(&comp) {
        Ok(_) => println!("warden: ok"),
        Err(e) => println!("warden: {e:#}"),
    }
}
#[allow(dead_code)]
fn exports() {}
