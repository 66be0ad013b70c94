//! The proxy-wasm ABI 0.2.1 host functions (module `env`), implemented on [`Host`]
//! with Envoy's semantics. gRPC calls are deliberately absent: `stubs` links them as
//! `Unimplemented` like any other unknown import.

use crate::abi::{
    deserialize_pairs, parse_path, serialize_pairs, status_code, HostResult, LogLevel, MetricKind,
    Status,
};
use crate::host::{Host, HttpCall, LogSource};
use crate::memory::{read, read_string, return_bytes, write_u32, write_u64};
use crate::stream::{
    header_value, normalize, replace_header, set_buffer_bytes, LocalReply, StreamKind,
};
use std::time::Duration;
use wasmtime::{Caller, Linker};

/// Defines `env.$name`: records the call, runs the body (which returns a
/// [`HostResult`]) and hands the guest its status code.
macro_rules! hostcall {
    ($linker:ident, $name:literal, |$caller:ident $(, $arg:ident: $ty:ty)*| $body:block) => {
        $linker.func_wrap("env", $name, |mut $caller: Caller<'_, Host>, $($arg: $ty),*| -> i32 {
            $caller.data_mut().record_call($name);
            // The closure gives the body its own `?` scope.
            #[allow(clippy::redundant_closure_call)]
            let result: HostResult = (|| $body)();
            status_code(result)
        })?;
    };
}

/// Number of the argument as an unsigned size (wasm32 `usize` arrives as i32).
fn size(raw: i32) -> usize {
    raw as u32 as usize
}

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    add_logging_and_time(linker)?;
    add_buffers_and_maps(linker)?;
    add_properties_and_shared_state(linker)?;
    add_stream_control(linker)?;
    add_metrics(linker)?;
    Ok(())
}

fn add_logging_and_time(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    hostcall!(linker, "proxy_log", |c, level: i32, ptr: i32, len: i32| {
        let level = LogLevel::from_raw(level)?;
        let message = read_string(&mut c, ptr, len)?;
        c.data_mut().log(level, message, LogSource::Proxy);
        Ok(())
    });
    hostcall!(linker, "proxy_get_log_level", |c, out: i32| {
        let level = c.data().log_level as u32;
        write_u32(&mut c, out, level)
    });
    hostcall!(
        linker,
        "proxy_get_current_time_nanoseconds",
        |c, out: i32| {
            let now = c.data().world.realtime_nanos();
            write_u64(&mut c, out, now)
        }
    );
    hostcall!(
        linker,
        "proxy_set_tick_period_milliseconds",
        |c, millis: i32| {
            let period = (millis != 0).then(|| Duration::from_millis(millis as u32 as u64));
            c.data_mut().tick_period = period;
            Ok(())
        }
    );
    Ok(())
}

fn add_buffers_and_maps(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    hostcall!(
        linker,
        "proxy_get_buffer_bytes",
        |c, kind: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32| {
            let buffer = c.data().buffer(kind)?;
            let start = size(start).min(buffer.len());
            let end = start.saturating_add(size(max)).min(buffer.len());
            let bytes = buffer[start..end].to_vec();
            return_bytes(&mut c, &bytes, ptr_ptr, size_ptr)
        }
    );
    hostcall!(
        linker,
        "proxy_set_buffer_bytes",
        |c, kind: i32, start: i32, len: i32, ptr: i32, data_len: i32| {
            let data = read(&mut c, ptr, data_len)?;
            set_buffer_bytes(
                c.data_mut().buffer_mut(kind)?,
                size(start),
                size(len),
                &data,
            )
        }
    );
    hostcall!(
        linker,
        "proxy_get_header_map_pairs",
        |c, kind: i32, ptr_ptr: i32, size_ptr: i32| {
            // A map that does not exist yet reads as empty rather than failing: the SDK
            // panics on any status but Ok here.
            let bytes = serialize_pairs(c.data().map(kind)?.map_or(&[][..], |m| m.as_slice()));
            return_bytes(&mut c, &bytes, ptr_ptr, size_ptr)
        }
    );
    hostcall!(
        linker,
        "proxy_set_header_map_pairs",
        |c, kind: i32, ptr: i32, len: i32| {
            let pairs = deserialize_pairs(&read(&mut c, ptr, len)?)?;
            *c.data_mut().map_mut(kind)? = normalize(&pairs);
            Ok(())
        }
    );
    hostcall!(
        linker,
        "proxy_get_header_map_value",
        |c, kind: i32, key_ptr: i32, key_len: i32, ptr_ptr: i32, size_ptr: i32| {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let map = c.data().map(kind)?.ok_or(Status::NotFound)?;
            let value = header_value(map, &key).ok_or(Status::NotFound)?.to_string();
            return_bytes(&mut c, value.as_bytes(), ptr_ptr, size_ptr)
        }
    );
    hostcall!(
        linker,
        "proxy_replace_header_map_value",
        |c, kind: i32, key_ptr: i32, key_len: i32, ptr: i32, len: i32| {
            let (key, value) = (
                read_string(&mut c, key_ptr, key_len)?,
                read_string(&mut c, ptr, len)?,
            );
            replace_header(c.data_mut().map_mut(kind)?, &key, &value);
            Ok(())
        }
    );
    hostcall!(
        linker,
        "proxy_remove_header_map_value",
        |c, kind: i32, key_ptr: i32, key_len: i32| {
            let key = read_string(&mut c, key_ptr, key_len)?;
            c.data_mut()
                .map_mut(kind)?
                .retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            Ok(())
        }
    );
    hostcall!(
        linker,
        "proxy_add_header_map_value",
        |c, kind: i32, key_ptr: i32, key_len: i32, ptr: i32, len: i32| {
            let (key, value) = (
                read_string(&mut c, key_ptr, key_len)?,
                read_string(&mut c, ptr, len)?,
            );
            c.data_mut()
                .map_mut(kind)?
                .push((key.to_ascii_lowercase(), value));
            Ok(())
        }
    );
    Ok(())
}

fn add_properties_and_shared_state(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    hostcall!(
        linker,
        "proxy_get_property",
        |c, path_ptr: i32, path_len: i32, ptr_ptr: i32, size_ptr: i32| {
            let path = parse_path(&read(&mut c, path_ptr, path_len)?);
            let value = c.data().property(&path).ok_or(Status::NotFound)?;
            return_bytes(&mut c, &value, ptr_ptr, size_ptr)
        }
    );
    hostcall!(
        linker,
        "proxy_set_property",
        |c, path_ptr: i32, path_len: i32, ptr: i32, len: i32| {
            let path = parse_path(&read(&mut c, path_ptr, path_len)?);
            let value = read(&mut c, ptr, len)?;
            // Envoy stores it as filter state of the stream; from the root context it has
            // no stream, so it becomes a VM-level property here.
            let host = c.data_mut();
            match host.current_stream() {
                Ok(stream) => stream.filter_state.insert(path, value),
                Err(_) => host.properties.insert(path, value),
            };
            Ok(())
        }
    );
    hostcall!(
        linker,
        "proxy_get_shared_data",
        |c, key_ptr: i32, key_len: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32| {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let (value, cas) = c
                .data()
                .world
                .get_shared_for_guest(&key)
                .ok_or(Status::NotFound)?;
            return_bytes(&mut c, &value, ptr_ptr, size_ptr)?;
            write_u32(&mut c, cas_ptr, cas)
        }
    );
    hostcall!(
        linker,
        "proxy_set_shared_data",
        |c, key_ptr: i32, key_len: i32, ptr: i32, len: i32, cas: i32| {
            let (key, value) = (
                read_string(&mut c, key_ptr, key_len)?,
                read(&mut c, ptr, len)?,
            );
            c.data().world.cas_set(&key, value, cas as u32)
        }
    );
    hostcall!(
        linker,
        "proxy_register_shared_queue",
        |c, name_ptr: i32, name_len: i32, out: i32| {
            let name = read_string(&mut c, name_ptr, name_len)?;
            let host = c.data();
            let id = host.world.register_queue(host.vm_uid, &host.vm_id, &name);
            write_u32(&mut c, out, id)
        }
    );
    hostcall!(
        linker,
        "proxy_resolve_shared_queue",
        |c, vm_ptr: i32, vm_len: i32, name_ptr: i32, name_len: i32, out: i32| {
            let (vm_id, name) = (
                read_string(&mut c, vm_ptr, vm_len)?,
                read_string(&mut c, name_ptr, name_len)?,
            );
            let id = c.data().world.resolve_queue(&vm_id, &name)?;
            write_u32(&mut c, out, id)
        }
    );
    hostcall!(
        linker,
        "proxy_enqueue_shared_queue",
        |c, id: i32, ptr: i32, len: i32| {
            let item = read(&mut c, ptr, len)?;
            c.data().world.enqueue(id as u32, item)
        }
    );
    hostcall!(
        linker,
        "proxy_dequeue_shared_queue",
        |c, id: i32, ptr_ptr: i32, size_ptr: i32| {
            let item = c.data().world.dequeue(id as u32)?;
            return_bytes(&mut c, &item, ptr_ptr, size_ptr)
        }
    );
    Ok(())
}

fn add_stream_control(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    hostcall!(linker, "proxy_continue_stream", |c, kind: i32| {
        let kind = StreamKind::from_raw(kind)?;
        c.data_mut().current_stream()?.continue_stream(kind);
        Ok(())
    });
    hostcall!(linker, "proxy_close_stream", |c, kind: i32| {
        let kind = StreamKind::from_raw(kind)?;
        c.data_mut().current_stream()?.closes.push(kind);
        Ok(())
    });
    hostcall!(
        linker,
        "proxy_send_local_response",
        |c,
         status: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc: i32| {
            let details = read_string(&mut c, details_ptr, details_len)?;
            let body = read(&mut c, body_ptr, body_len)?;
            let headers = normalize(&deserialize_pairs(&read(
                &mut c,
                headers_ptr,
                headers_len,
            )?)?);
            let grpc_status = (grpc >= 0).then_some(grpc);
            let reply = LocalReply {
                status_code: status as u32,
                details,
                body,
                headers,
                grpc_status,
            };
            c.data_mut().current_stream()?.local_reply = Some(reply);
            Ok(())
        }
    );
    hostcall!(
        linker,
        "proxy_http_call",
        |c,
         up_ptr: i32,
         up_len: i32,
         h_ptr: i32,
         h_len: i32,
         b_ptr: i32,
         b_len: i32,
         t_ptr: i32,
         t_len: i32,
         timeout: i32,
         out: i32| {
            let upstream = read_string(&mut c, up_ptr, up_len)?;
            let headers = normalize(&deserialize_pairs(&read(&mut c, h_ptr, h_len)?)?);
            let body = read(&mut c, b_ptr, b_len)?;
            let trailers = normalize(&deserialize_pairs(&read(&mut c, t_ptr, t_len)?)?);
            // Envoy refuses callouts without these pseudo-headers.
            if [":method", ":path", ":authority"]
                .iter()
                .any(|h| header_value(&headers, h).is_none())
            {
                return Err(Status::BadArgument);
            }
            let host = c.data_mut();
            host.next_token += 1;
            let token = host.next_token;
            let timeout = Duration::from_millis(timeout as u32 as u64);
            let context_id = host.current_context;
            host.http_calls.insert(
                token,
                HttpCall {
                    token,
                    upstream,
                    headers,
                    body,
                    trailers,
                    timeout,
                    context_id,
                },
            );
            write_u32(&mut c, out, token)
        }
    );
    hostcall!(linker, "proxy_set_effective_context", |c, id: i32| {
        let host = c.data_mut();
        let id = id as u32;
        if id != host.root_id && !host.streams.contains_key(&id) {
            return Err(Status::BadArgument);
        }
        host.current_context = id;
        Ok(())
    });
    hostcall!(linker, "proxy_done", |c| {
        c.data_mut().done_calls += 1;
        Ok(())
    });
    hostcall!(
        linker,
        "proxy_call_foreign_function",
        |c,
         name_ptr: i32,
         name_len: i32,
         _args_ptr: i32,
         _args_len: i32,
         _ptr_ptr: i32,
         _size_ptr: i32| {
            // No foreign functions are registered, which Envoy reports as NotFound.
            let name = read_string(&mut c, name_ptr, name_len)?;
            c.data_mut()
                .unimplemented
                .push(format!("proxy_call_foreign_function({name})"));
            Err(Status::NotFound)
        }
    );
    Ok(())
}

fn add_metrics(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    hostcall!(
        linker,
        "proxy_define_metric",
        |c, kind: i32, name_ptr: i32, name_len: i32, out: i32| {
            let kind = MetricKind::from_raw(kind)?;
            let name = read_string(&mut c, name_ptr, name_len)?;
            let id = c.data().world.define_metric(kind, &name)?;
            write_u32(&mut c, out, id)
        }
    );
    hostcall!(
        linker,
        "proxy_increment_metric",
        |c, id: i32, offset: i64| { c.data().world.increment_metric(id as u32, offset) }
    );
    hostcall!(linker, "proxy_record_metric", |c, id: i32, value: i64| {
        c.data().world.record_metric(id as u32, value as u64)
    });
    hostcall!(linker, "proxy_get_metric", |c, id: i32, out: i32| {
        let value = c.data().world.get_metric(id as u32)?;
        write_u64(&mut c, out, value)
    });
    Ok(())
}
