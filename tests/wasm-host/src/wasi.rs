//! The slice of WASI preview1 a Rust `wasm32-wasip1` proxy-wasm module needs, written
//! by hand so the clock follows [`crate::World`], randomness is seeded, and
//! stdout/stderr land in the VM's logs. No filesystem, arguments or environment.
//! Other WASI imports are linked by `stubs` and return `ENOSYS`.

use crate::abi::Status;
use crate::host::Host;
use crate::memory::{read, write, write_u32, write_u64};
use wasmtime::{Caller, Linker};

pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

/// WASI errno values used here.
pub(crate) mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
    pub const SPIPE: i32 = 70;
}

type WasiResult = Result<(), i32>;

/// Defines `wasi_snapshot_preview1.$name`: records the call and returns the errno.
macro_rules! wasi {
    ($linker:ident, $name:literal, |$caller:ident $(, $arg:ident: $ty:ty)*| $body:block) => {
        $linker.func_wrap(MODULE, $name, |mut $caller: Caller<'_, Host>, $($arg: $ty),*| -> i32 {
            $caller.data_mut().record_call(concat!("wasi:", $name));
            // The closure gives the body its own `?` scope.
            #[allow(clippy::redundant_closure_call)]
            let result: WasiResult = (|| $body)();
            result.err().unwrap_or(errno::SUCCESS)
        })?;
    };
}

/// Memory errors from the shared helpers become `EFAULT`.
fn mem<T>(result: Result<T, Status>) -> Result<T, i32> {
    result.map_err(|_| errno::FAULT)
}

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    add_process(linker)?;
    add_fds(linker)?;
    Ok(())
}

fn add_process(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    // Empty argument and environment lists: write zero counts and sizes.
    for name in ["args_sizes_get", "environ_sizes_get"] {
        linker.func_wrap(
            MODULE,
            name,
            move |mut c: Caller<'_, Host>, count: i32, size: i32| -> i32 {
                c.data_mut().record_call(&format!("wasi:{name}"));
                let written = write_u32(&mut c, count, 0).and_then(|()| write_u32(&mut c, size, 0));
                mem(written).err().unwrap_or(errno::SUCCESS)
            },
        )?;
    }
    for name in ["args_get", "environ_get"] {
        linker.func_wrap(
            MODULE,
            name,
            move |mut c: Caller<'_, Host>, _: i32, _: i32| -> i32 {
                c.data_mut().record_call(&format!("wasi:{name}"));
                errno::SUCCESS
            },
        )?;
    }
    wasi!(
        linker,
        "clock_time_get",
        |c, id: i32, _precision: i64, out: i32| {
            let world = &c.data().world;
            let nanos = match id {
                0 => world.realtime_nanos(),
                // Monotonic, process and thread CPU clocks all follow the monotonic clock.
                1..=3 => world.monotonic_nanos(),
                _ => return Err(errno::INVAL),
            };
            mem(write_u64(&mut c, out, nanos))
        }
    );
    wasi!(linker, "clock_res_get", |c, _id: i32, out: i32| {
        mem(write_u64(&mut c, out, 1))
    });
    wasi!(linker, "random_get", |c, ptr: i32, len: i32| {
        let host = c.data_mut();
        let bytes: Vec<u8> = (0..len as u32).map(|_| host.next_random() as u8).collect();
        mem(write(&mut c, ptr, &bytes))
    });
    wasi!(linker, "sched_yield", |c| { Ok(()) });
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |mut c: Caller<'_, Host>, code: i32| -> wasmtime::Result<()> {
            c.data_mut().record_call("wasi:proc_exit");
            wasmtime::bail!("wasm module called proc_exit({code})")
        },
    )?;
    Ok(())
}

fn add_fds(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    wasi!(
        linker,
        "fd_write",
        |c, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| {
            if !(1..=2).contains(&fd) {
                return Err(errno::BADF);
            }
            let mut data = Vec::new();
            for i in 0..iovs_len {
                let iov = mem(read(&mut c, iovs + i * 8, 8))?;
                let ptr = i32::from_le_bytes(iov[..4].try_into().unwrap());
                let len = i32::from_le_bytes(iov[4..].try_into().unwrap());
                data.extend(mem(read(&mut c, ptr, len))?);
            }
            c.data_mut().write_stdio(fd as usize - 1, &data);
            mem(write_u32(&mut c, nwritten, data.len() as u32))
        }
    );
    wasi!(linker, "fd_fdstat_get", |c, fd: i32, out: i32| {
        if !(0..=2).contains(&fd) {
            return Err(errno::BADF);
        }
        // fdstat: filetype (2 = character device), flags, rights base/inheriting.
        let mut stat = [0u8; 24];
        stat[0] = 2;
        stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        mem(write(&mut c, out, &stat))
    });
    wasi!(linker, "fd_close", |c, fd: i32| {
        match fd {
            0..=2 => Ok(()),
            _ => Err(errno::BADF),
        }
    });
    // No preopened directories: the first probe ends libc's preopen scan.
    wasi!(linker, "fd_prestat_get", |c, _fd: i32, _out: i32| {
        Err(errno::BADF)
    });
    wasi!(
        linker,
        "fd_prestat_dir_name",
        |c, _fd: i32, _ptr: i32, _len: i32| { Err(errno::BADF) }
    );
    wasi!(linker, "fd_seek", |c,
                              _fd: i32,
                              _offset: i64,
                              _whence: i32,
                              _out: i32| {
        Err(errno::SPIPE)
    });
    Ok(())
}
