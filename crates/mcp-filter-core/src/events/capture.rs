//! Events captured in memory, for the native tests and the exchange fuzz target: a line sink
//! the caller can read after handing it to the emitter.

use super::emitter::{Events, LineSink};
use crate::config::Level;
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// The lines the emitter wrote, shared with whoever reads them.
#[derive(Clone, Default)]
pub struct SharedSink(pub Rc<RefCell<Vec<String>>>);

impl LineSink for SharedSink {
    fn line(&mut self, line: &[u8]) {
        self.0
            .borrow_mut()
            .push(String::from_utf8_lossy(line).into_owned());
    }
}

impl SharedSink {
    /// The lines as JSON; a line that is not JSON is a bug, reported by panicking.
    #[allow(clippy::expect_used)]
    pub fn events(&self) -> Vec<Value> {
        self.0
            .borrow()
            .iter()
            .map(|l| serde_json::from_str(l).expect("event lines are JSON"))
            .collect()
    }
}

/// An emitter writing to a fresh `SharedSink`.
pub fn capturing(min_level: Level) -> (Events, SharedSink) {
    let sink = SharedSink::default();
    let mut events = Events::new("src1".into(), min_level);
    events.set_line_sink(Some(Box::new(sink.clone())));
    (events, sink)
}
