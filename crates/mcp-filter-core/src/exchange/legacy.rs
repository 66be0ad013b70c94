//! The legacy HTTP+SSE transport's split exchange: a POST to the session's message endpoint
//! is answered `202`, and its JSON-RPC answer arrives on the session's GET stream, usually
//! through another worker, and with a fast server often before the POST's own `202` is
//! seen. So the POST's elements are parked in shared data as the request goes upstream
//! (`pending`), and whichever side takes an element first answers it: the GET stream when
//! the answer arrives there, or the POST itself when it is answered otherwise (an error, a
//! direct JSON answer). Taking is a compare-and-swap, so each element is answered once.

use super::{Env, Exchange};
use crate::pending::PendingRequest;

impl Exchange {
    /// Parks the elements that expect an answer, when this is a legacy POST going upstream.
    pub(super) fn park_legacy(&mut self, env: &mut Env) {
        let Some(session) = self.request.legacy_post_session.as_deref() else {
            return;
        };
        for index in 0..self.elements.len() {
            let expects = self
                .elements
                .get(index)
                .is_some_and(|e| e.expects_response && !e.answered);
            let Some(id) = self.elements.id(index).filter(|_| expects) else {
                continue;
            };
            let request = PendingRequest {
                common: self.common.fragment(env.config, env.memo).to_vec(),
                fields: self.elements.fields(index).to_vec(),
                started: self.started,
            };
            let parked = env.pending.park(session, id, &request);
            if let Some(element) = self.elements.get_mut(index) {
                element.parked = parked;
            }
        }
    }

    /// Whether this exchange answers element `index` itself: always, unless it is parked, in
    /// which case only if it takes it back before the GET stream does.
    pub(super) fn claim(&mut self, index: usize, env: &mut Env) -> bool {
        if !self.elements.get(index).is_some_and(|e| e.parked) {
            return true;
        }
        let (Some(session), Some(id)) = (
            self.request.legacy_post_session.as_deref(),
            self.elements.id(index),
        ) else {
            return true;
        };
        env.pending.take(session, id).is_some()
    }

    /// At the POST's end: a parked element answered `202` is the GET stream's to answer;
    /// otherwise this exchange answers it, if it takes it back first.
    pub(super) fn settle_parked(&mut self, index: usize, env: &mut Env) -> bool {
        if self.response.status == Some(202) && self.elements.get(index).is_some_and(|e| e.parked) {
            return false;
        }
        self.claim(index, env)
    }
}
