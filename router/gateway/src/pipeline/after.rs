//! What follows an upstream answer once it is complete (a stream: once it has ended): the
//! split arm's counters, then the shadow copy of a sampled request. Made just before the
//! upstream call; dropped without an answer (every attempt failed, or the client left), it
//! counts the arm's failure and sends no shadow.

use super::shadow::{Pending, ShadowNote};
use super::*;
use switchyard_routing::split::{ArmOutcome, ArmStats};

pub(super) struct After {
    /// The split's counters, the route and the arm this request was placed on.
    arm: Option<(Arc<ArmStats>, String, ModelId)>,
    shadow: Option<Pending>,
    /// What the explanation says of the route's shadow, decided with the draw.
    note: Option<ShadowNote>,
    /// A stream's answer so far: who answered, after how long to its first token.
    primed: Option<(ModelId, Duration)>,
    done: bool,
}

impl After {
    pub(super) fn new(gw: &Gateway, p: &Planned<'_, '_>, ex: Option<&Arc<Exchange>>) -> After {
        let arm = p
            .decision
            .split
            .as_ref()
            .and_then(|s| s.arm.clone())
            .map(|arm| (gw.arms.clone(), p.route.name.clone(), arm));
        let (shadow, note) = Pending::sample(gw, &p.route, &p.request, ex);
        After {
            arm,
            shadow,
            note,
            primed: None,
            done: false,
        }
    }

    /// The route's shadow for this request, for `routing.shadow`.
    pub(super) fn note(&self) -> Option<ShadowNote> {
        self.note.clone()
    }

    /// A complete answer from `model` after `latency`, for `cost` picodollars in all.
    pub(super) fn answered(mut self, model: &ModelId, latency: Duration, cost: i64) {
        self.finish(model, latency, cost);
    }

    /// A stream's first token came from `model` after `latency`; the rest waits for its end.
    pub(super) fn primed(mut self, model: &ModelId, latency: Duration) -> After {
        self.primed = Some((model.clone(), latency));
        self
    }

    /// The primed stream ended (finished, cut or abandoned), having cost `cost` in all.
    pub(super) fn ended(mut self, cost: i64) {
        if let Some((model, latency)) = self.primed.take() {
            self.finish(&model, latency, cost);
        }
    }

    fn finish(&mut self, model: &ModelId, latency: Duration, cost: i64) {
        self.done = true;
        if let Some((stats, route, arm)) = &self.arm {
            stats.record(
                route,
                arm,
                ArmOutcome::Answered {
                    by_arm: arm == model,
                    latency,
                    cost_picousd: cost,
                },
            );
        }
        if let Some(shadow) = self.shadow.take() {
            shadow.launch(model);
        }
    }
}

impl Drop for After {
    fn drop(&mut self) {
        if !self.done
            && let Some((stats, route, arm)) = &self.arm
        {
            stats.record(route, arm, ArmOutcome::Failed);
        }
    }
}
