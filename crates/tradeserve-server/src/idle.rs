//! Background threads that must never compete with the request path (the shadow runner, the
//! explanation threads) run under Linux's `SCHED_IDLE`: they get a core only when no other
//! thread wants one, and are preempted at once when a request thread wakes. A thread at
//! nice 19 instead keeps its core until its scheduler slice ends, which measurably delayed
//! plain requests (docs/BENCHMARKS.md).

/// Put the calling thread under `SCHED_IDLE`; on failure it stays at normal priority (logged).
pub fn enter(thread: &str) {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        tracing::warn!(thread, error = ?e, "cannot give the thread idle priority; it runs at normal priority");
    }
}
