//! The host calls on the per-request path, made directly on the proxy-wasm ABI: the SDK's
//! wrappers copy every header into its own `String` and `Vec` and abort on any status they do
//! not expect, while these borrow from the host's buffer and return every failure as an
//! error the caller counts. Everything else goes through the SDK's `hostcalls`.

use crate::exchange::Header;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::ptr::null_mut;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_add_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
}

/// Bytes the host allocated in our memory (through the SDK's `proxy_on_memory_allocate`).
fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host filled `size` bytes of a block it obtained from
    // `proxy_on_memory_allocate(size)`, which allocates exactly `size` bytes of u8 with the
    // global allocator; we take ownership once.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// A serialized header map owned by us: `u32` count, `count` x (`u32` name length, `u32`
/// value length), then each name and value followed by a NUL.
pub struct HeaderMap {
    bytes: Vec<u8>,
}

impl HeaderMap {
    pub fn read(map: MapType) -> Result<HeaderMap, &'static str> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the out-pointers are valid for the call.
        let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
        match status {
            Status::Ok => Ok(HeaderMap {
                bytes: take_host_bytes(data, size),
            }),
            Status::NotFound => Ok(HeaderMap { bytes: Vec::new() }),
            _ => Err("get_header_map_pairs"),
        }
    }

    /// The pairs, borrowing the map. A malformed map yields the pairs before the fault.
    pub fn iter(&self) -> Pairs<'_> {
        let count = u32_at(&self.bytes, 0).unwrap_or(0);
        Pairs {
            bytes: &self.bytes,
            left: count,
            sizes: 4,
            data: 4 + count.saturating_mul(8),
        }
    }
}

/// Iterator over a serialized header map.
pub struct Pairs<'a> {
    bytes: &'a [u8],
    left: usize,
    /// Where the next (name length, value length) pair is.
    sizes: usize,
    /// Where the next name is.
    data: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        self.left = self.left.checked_sub(1)?;
        let name_len = u32_at(self.bytes, self.sizes)?;
        let value_len = u32_at(self.bytes, self.sizes + 4)?;
        self.sizes += 8;
        let name = self.bytes.get(self.data..self.data + name_len)?;
        self.data += name_len + 1;
        let value = self.bytes.get(self.data..self.data + value_len)?;
        self.data += value_len + 1;
        Some((name, value))
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> Result<(), &'static str> {
    // SAFETY: pointers and lengths describe live slices for the call.
    let status = unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    };
    match status {
        Status::Ok => Ok(()),
        _ => Err("replace_header_map_value"),
    }
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), &'static str> {
    proxy_wasm::hostcalls::set_map_value(map, name, None).map_err(|_| "remove_header_map_value")
}

pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<(), &'static str> {
    // SAFETY: pointers and lengths describe live slices for the call.
    let status = unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    };
    match status {
        Status::Ok => Ok(()),
        _ => Err("add_header_map_value"),
    }
}

/// `max` bytes of a body buffer from `start`.
pub fn buffer(buffer: BufferType, start: usize, max: usize) -> Result<Vec<u8>, &'static str> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the out-pointers are valid for the call.
    let status = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut data, &mut size) };
    match status {
        Status::Ok => Ok(take_host_bytes(data, size)),
        Status::NotFound => Ok(Vec::new()),
        _ => Err("get_buffer_bytes"),
    }
}

/// A property by its path (segments joined by NUL, e.g. `b"xds\0cluster_name"`); `None` when
/// absent or unavailable.
pub fn property(path: &[u8]) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the path slice and the out-pointers are valid for the call.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match status {
        Status::Ok if !data.is_null() => Some(take_host_bytes(data, size)),
        _ => None,
    }
}

pub fn string_property(path: &[u8]) -> Option<String> {
    property(path).map(|bytes| {
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    })
}

/// An integer property (Envoy encodes them as 8 bytes, little-endian).
pub fn int_property(path: &[u8]) -> Option<u32> {
    let bytes = property(path)?;
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    u32::try_from(u64::from_le_bytes(array)).ok()
}
