//! The WASI imports a Rust `wasm32-wasip2` plugin links against, reduced to
//! harmless ones.
//!
//! Rust's standard library makes every component import a handful of WASI
//! interfaces (stdio, environment, exit, ...), even when the plugin never
//! uses them. The proxy grants none of them: each such import is bound to a
//! function that traps when called. Only side-effect-free ones are real:
//! random numbers from the operating system's CSPRNG (so `HashMap::new()`
//! works, and a plugin's tokens cannot be predicted), the wall clock and the
//! monotonic clock's `now` (so `std::time` works). There is no filesystem,
//! network, environment or standard I/O, and nothing that blocks.
//!
//! Bindings are made per component, under the exact import names it uses.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentType, Lift, LinkerInstance, Lower, ResourceType};

use super::host::{HostState, monotonic_ns};

/// Largest buffer `get-random-bytes` hands out in one call.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// Whether `name` (an import name) is a WASI interface.
pub(crate) fn is_wasi(name: &str) -> bool {
    name.starts_with("wasi:")
}

/// Binds every WASI import of `component` into `linker`.
pub(crate) fn bind(
    engine: &Engine,
    linker: &mut wasmtime::component::Linker<HostState>,
    component: &Component,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        if !is_wasi(name) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance_ty) = item.ty else {
            continue;
        };
        let interface = name.split('@').next().unwrap_or(name);
        let mut instance = linker.instance(name)?;
        for (export, export_ty) in instance_ty.exports(engine) {
            match export_ty.ty {
                ComponentItem::Resource(_) => {
                    instance.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                }
                ComponentItem::ComponentFunc(_) => {
                    bind_func(&mut instance, name, interface, export)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Binds `func` of the import `name`: the real implementation when there is
/// one, a trap otherwise.
fn bind_func(
    instance: &mut LinkerInstance<'_, HostState>,
    name: &str,
    interface: &str,
    func: &str,
) -> wasmtime::Result<()> {
    if bind_real(instance, interface, func)? {
        Ok(())
    } else {
        stub(instance, name, func)
    }
}

/// Binds the real implementation of `interface.func`, if there is one.
fn bind_real(
    instance: &mut LinkerInstance<'_, HostState>,
    interface: &str,
    func: &str,
) -> wasmtime::Result<bool> {
    match (interface, func) {
        ("wasi:random/random", "get-random-bytes")
        | ("wasi:random/insecure", "get-insecure-random-bytes") => {
            instance.func_wrap(func, |mut cx, (len,): (u64,)| {
                if len > MAX_RANDOM_BYTES {
                    wasmtime::bail!("random buffer of {len} bytes requested");
                }
                let mut bytes = vec![0u8; len as usize];
                cx.data_mut()
                    .random_bytes(&mut bytes)
                    .map_err(|e| wasmtime::format_err!("the OS random generator failed: {e}"))?;
                Ok((bytes,))
            })?;
        }
        ("wasi:random/random", "get-random-u64")
        | ("wasi:random/insecure", "get-insecure-random-u64") => {
            instance.func_wrap(func, |mut cx, (): ()| Ok((cx.data_mut().random_u64(),)))?;
        }
        ("wasi:random/insecure-seed", "insecure-seed") => {
            instance.func_wrap(func, |mut cx, (): ()| {
                let state = cx.data_mut();
                Ok(((state.random_u64(), state.random_u64()),))
            })?;
        }
        ("wasi:clocks/wall-clock", "now") => {
            instance.func_wrap(func, |_, (): ()| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Ok((Datetime {
                    seconds: now.as_secs(),
                    nanoseconds: now.subsec_nanos(),
                },))
            })?;
        }
        ("wasi:clocks/wall-clock", "resolution") => {
            instance.func_wrap(func, |_, (): ()| {
                Ok((Datetime {
                    seconds: 0,
                    nanoseconds: 1,
                },))
            })?;
        }
        ("wasi:clocks/monotonic-clock", "now") => {
            instance.func_wrap(func, |_, (): ()| Ok((monotonic_ns(),)))?;
        }
        ("wasi:clocks/monotonic-clock", "resolution") => {
            instance.func_wrap(func, |_, (): ()| Ok((1u64,)))?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Binds a function that traps with a message naming the import.
fn stub(
    instance: &mut LinkerInstance<'_, HostState>,
    interface: &str,
    func: &str,
) -> wasmtime::Result<()> {
    let what = format!("{interface}#{func}");
    instance.func_new(func, move |_, _, _, _| {
        wasmtime::bail!(
            "plugin called `{what}`, which Switchyard does not grant \
             (a panic message written to stderr ends up here too)"
        )
    })
}
