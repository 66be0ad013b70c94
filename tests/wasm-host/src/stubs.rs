//! Links every import the module needs but this host does not implement to a stub, so
//! instantiation never fails: `env` stubs return `Unimplemented`, WASI stubs `ENOSYS`.
//! Each call is recorded in `Vm::unimplemented_calls` for tests to assert on.

use crate::abi::Status;
use crate::host::Host;
use crate::wasi;
use anyhow::bail;
use wasmtime::{ExternType, Linker, Module, Store, Val, ValType};

pub(crate) fn link_missing(
    linker: &mut Linker<Host>,
    store: &mut Store<Host>,
    module: &Module,
) -> anyhow::Result<()> {
    for import in module.imports() {
        if linker.get_by_import(&mut *store, &import).is_some() {
            continue;
        }
        let name = format!("{}.{}", import.module(), import.name());
        let ExternType::Func(ty) = import.ty() else {
            bail!("module imports non-function {name}, which this host cannot provide");
        };
        let status = match import.module() {
            wasi::MODULE => wasi::errno::NOSYS,
            _ => Status::Unimplemented as i32,
        };
        let results: Vec<Val> = ty
            .results()
            .map(|t| zero(&t, status))
            .collect::<anyhow::Result<_>>()?;
        linker.func_new(
            import.module(),
            import.name(),
            ty,
            move |mut caller, _params, out| {
                let host = caller.data_mut();
                host.record_call(&name);
                host.unimplemented.push(name.clone());
                out.clone_from_slice(&results);
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// The stub's return value: the status for an i32 result, zero otherwise.
fn zero(ty: &ValType, status: i32) -> anyhow::Result<Val> {
    Ok(match ty {
        ValType::I32 => Val::I32(status),
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        other => bail!("cannot stub an import returning {other}"),
    })
}
