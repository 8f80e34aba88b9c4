//! A future wrapper that absorbs the wakes its future gives itself while it is being polled.
//!
//! hyper's body channel (1.12) wakes the connection's own task when the handler takes the
//! request body: the dispatcher registered that waker before it sent the body, and the
//! channel's receiver wakes it on every take — during the same poll, so the task is already
//! running. Tokio treats a task woken while it runs as a yield: it queues it again and, on the
//! work-stealing runtime, wakes a parked worker on another core (a futex call and a context
//! switch; measured at 1.5 futex calls per decision and ~8 µs of CPU, docs/BENCHMARKS.md).
//!
//! [`AbsorbSelfWakes`] polls its future with a waker of its own: a wake that arrives while the
//! poll is in progress only sets a flag, and the future is polled again at once if it returned
//! `Pending` with the flag set (at most [`MAX_REPOLLS`] times; then the task is woken the usual
//! way). A wake at any other time goes straight to the task. No wake is lost: the flag is read
//! after the poll is marked finished, so a wake racing with the end of a poll is either seen
//! there or sent to the task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls again in a row before falling back to waking the task.
pub const MAX_REPOLLS: usize = 4;

struct Absorber {
    polling: AtomicBool,
    woken: AtomicBool,
    /// The task's waker, registered at every poll (no lock on the request path).
    task: AtomicWaker,
}

impl Wake for Absorber {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
            // Re-check: the poll may have ended between the load and the store.
            if self.polling.load(Ordering::SeqCst) {
                return;
            }
        }
        self.task.wake();
    }
}

/// `inner`, polled so that its wakes during its own poll cost no reschedule.
pub struct AbsorbSelfWakes<F> {
    inner: Pin<Box<F>>,
    absorber: Arc<Absorber>,
    waker: Waker,
}

impl<F: Future> AbsorbSelfWakes<F> {
    pub fn new(inner: F) -> AbsorbSelfWakes<F> {
        let absorber = Arc::new(Absorber {
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        AbsorbSelfWakes {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&absorber)),
            absorber,
        }
    }

    /// The wrapped future.
    pub fn inner(&mut self) -> Pin<&mut F> {
        self.inner.as_mut()
    }
}

impl<F: Future> Future for AbsorbSelfWakes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.absorber.task.register(cx.waker());
        for _ in 0..=MAX_REPOLLS {
            this.absorber.woken.store(false, Ordering::SeqCst);
            this.absorber.polling.store(true, Ordering::SeqCst);
            let result = this
                .inner
                .as_mut()
                .poll(&mut Context::from_waker(&this.waker));
            this.absorber.polling.store(false, Ordering::SeqCst);
            if result.is_ready() {
                return result;
            }
            if !this.absorber.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still waking itself: yield to the runtime like any other task.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Wakes itself during its first `n` polls, then is ready.
    struct SelfWaking {
        left: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Poll `f` once as a task whose wakes are counted: the result and the counter.
    fn poll_as_task<F: Future>(f: &mut AbsorbSelfWakes<F>) -> (Poll<F::Output>, Arc<CountWakes>) {
        let task = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&task));
        let result = Pin::new(f).poll(&mut Context::from_waker(&waker));
        (result, task)
    }

    /// A future that wakes itself during its first `left` polls, and its poll counter.
    fn self_waking(left: usize) -> (AbsorbSelfWakes<SelfWaking>, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let f = AbsorbSelfWakes::new(SelfWaking {
            left,
            polls: Arc::clone(&polls),
        });
        (f, polls)
    }

    #[test]
    fn a_wake_during_the_poll_polls_again_without_waking_the_task() {
        let (mut f, polls) = self_waking(2);
        let (result, task) = poll_as_task(&mut f);
        assert!(result.is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_yields_to_the_runtime() {
        let (mut f, polls) = self_waking(100);
        let (result, task) = poll_as_task(&mut f);
        assert!(result.is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), MAX_REPOLLS + 1);
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_after_the_poll_reaches_the_task() {
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let mut f = AbsorbSelfWakes::new(std::future::poll_fn(move |cx| {
            let _ = tx.send(cx.waker().clone());
            Poll::<()>::Pending
        }));
        let (result, task) = poll_as_task(&mut f);
        assert!(result.is_pending());
        rx.recv().expect("the inner waker").wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }
}
