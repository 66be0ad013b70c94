//! Access to the guest's linear memory from host calls: bounds-checked reads and
//! writes, and returning data to the guest in memory it allocates itself.

use crate::abi::{HostResult, Status};
use crate::host::Host;
use wasmtime::{Caller, Memory};

/// Exports the SDK (or a C module) provides for host-to-guest allocations.
const ALLOCATORS: [&str; 2] = ["proxy_on_memory_allocate", "malloc"];

fn memory(caller: &mut Caller<'_, Host>) -> HostResult<Memory> {
    let export = caller
        .get_export("memory")
        .ok_or(Status::InvalidMemoryAccess)?;
    export.into_memory().ok_or(Status::InvalidMemoryAccess)
}

fn range(ptr: i32, len: usize) -> HostResult<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    Ok(start..start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?)
}

pub fn read(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) -> HostResult<Vec<u8>> {
    let mem = memory(caller)?;
    let bytes = mem.data(&caller).get(range(ptr, len as u32 as usize)?);
    bytes.map(<[u8]>::to_vec).ok_or(Status::InvalidMemoryAccess)
}

/// Reads a string argument; the ABI passes UTF-8 but invalid bytes are replaced
/// rather than rejected (Envoy treats them as opaque bytes).
pub fn read_string(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) -> HostResult<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

pub fn write(caller: &mut Caller<'_, Host>, ptr: i32, bytes: &[u8]) -> HostResult {
    let mem = memory(caller)?;
    let target = mem.data_mut(caller).get_mut(range(ptr, bytes.len())?);
    target
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

pub fn write_u32(caller: &mut Caller<'_, Host>, ptr: i32, value: u32) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

pub fn write_u64(caller: &mut Caller<'_, Host>, ptr: i32, value: u64) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest like proxy-wasm-cpp-host's `copyToPointerSize`: the guest
/// allocates, the host copies, and (pointer, size) are written to the out-parameters.
/// Empty data yields a null pointer without allocating, which the SDK reads as "none".
pub fn return_bytes(
    caller: &mut Caller<'_, Host>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    let pointer = if bytes.is_empty() {
        0
    } else {
        allocate(caller, bytes.len())?
    };
    if pointer != 0 {
        write(caller, pointer, bytes)?;
    }
    write_u32(caller, ptr_ptr, pointer as u32)?;
    write_u32(caller, size_ptr, bytes.len() as u32)
}

fn allocate(caller: &mut Caller<'_, Host>, size: usize) -> HostResult<i32> {
    let export = ALLOCATORS
        .iter()
        .find_map(|name| caller.get_export(name)?.into_func());
    let func = export.ok_or(Status::InternalFailure)?;
    let alloc = func
        .typed::<i32, i32>(&caller)
        .map_err(|_| Status::InternalFailure)?;
    let pointer = alloc
        .call(&mut *caller, size as i32)
        .map_err(|_| Status::InternalFailure)?;
    match pointer {
        0 => Err(Status::InternalFailure),
        p => Ok(p),
    }
}
