//! Which trace the running work belongs to: the HTTP edge runs each request inside [`scope`]
//! with a `TraceContext` continuing the caller's `traceparent` (or starting a trace), the
//! consumer runtime runs each handler in a child of its event's context, and the stores read
//! [`current`] and hand it to the event constructors of `docket-events`, which take it as an
//! argument (they stay pure).
//!
//! The context is a tokio task-local; work handed to another thread (the SQLite writer)
//! captures it with [`current`] and re-enters it with [`sync_scope`]. The context type itself
//! and its wire form are `docket_events::trace`'s; the random ids of a new trace or span are
//! drawn here ([`root`], [`child`]), so that crate stays pure.

use docket_events::trace::TraceContext;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A new trace (sampled), with random trace and span ids.
pub fn root() -> TraceContext {
    drawn(|| TraceContext::root(rand::random(), rand::random()))
}

/// A new span in `parent`'s trace (the caller's or an event's context), with a random id.
pub fn child(parent: TraceContext) -> TraceContext {
    drawn(|| parent.child(rand::random()))
}

/// Draws until the ids are valid (not zero; a draw of zero is all but impossible).
fn drawn(mut draw: impl FnMut() -> Option<TraceContext>) -> TraceContext {
    loop {
        if let Some(ctx) = draw() {
            return ctx;
        }
    }
}

/// The context of the running task (or of the enclosing [`sync_scope`]), if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Runs `fut` with `ctx` as the current context.
pub async fn scope<F: Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// Runs `f` with `ctx` (when there is one) as the current context, on any thread.
pub fn sync_scope<R>(ctx: Option<TraceContext>, f: impl FnOnce() -> R) -> R {
    match ctx {
        Some(ctx) => CURRENT.sync_scope(ctx, f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_spans_draw_new_ids() {
        let (a, b) = (root(), root());
        assert_ne!(a.trace_id(), b.trace_id(), "each root starts its own trace");
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
        let c = child(a);
        assert_eq!(c.trace_id(), a.trace_id(), "a child stays in its parent's trace");
        assert_ne!(c, a);
    }

    #[tokio::test]
    async fn the_current_context_follows_scopes_and_threads() {
        assert_eq!(current(), None, "no context outside a scope");
        let ctx = root();
        assert_eq!(scope(ctx, async { current() }).await, Some(ctx));
        assert_eq!(current(), None, "the scope ended");
        // On another thread, through sync_scope (how the SQLite writer runs closures).
        let captured = scope(ctx, async { current() }).await;
        let on_thread =
            std::thread::spawn(move || sync_scope(captured, current)).join().expect("thread");
        assert_eq!(on_thread, Some(ctx));
        assert_eq!(std::thread::spawn(|| sync_scope(None, current)).join().expect("thread"), None);
    }
}
