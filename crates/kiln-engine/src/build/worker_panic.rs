//! Workers that panic: a bug in kiln, or a case it did not foresee, must fail the target it
//! was working on, with the panic's message, and never leave the run waiting for a report
//! that will not come.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The text of a panic's payload (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// The reason a target gets when its worker panicked.
pub fn panic_reason(message: &str) -> String {
    format!("kiln failed internally while working on it (a bug; please report it): {message}")
}

/// Runs `f`, turning a panic into `Err(reason)`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_reason(&panic_message(p.as_ref())))
}

/// Runs `work`, turning a panic while it is polled into `Err(reason)`. No task of its own:
/// each poll of `work` runs inside `catch_unwind`.
pub fn catch_async<F: Future>(work: F) -> CatchUnwind<F> {
    CatchUnwind(Box::pin(work))
}

/// The future of [`catch_async`].
pub struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_reason(&panic_message(payload.as_ref())))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_closure_becomes_its_message() {
        let got = catch(|| -> u32 { panic!("overflow when adding duration to instant") });
        let why = got.expect_err("it panicked");
        assert!(why.contains("overflow when adding duration to instant"), "{why}");
        assert_eq!(catch(|| 7), Ok(7));
    }

    #[tokio::test]
    async fn a_panicking_future_becomes_its_message() {
        let n = 3;
        let got = catch_async(async move {
            tokio::task::yield_now().await;
            assert!(n > 5, "formatted {n}");
            n
        })
        .await;
        assert!(got.expect_err("it panicked").contains("formatted 3"));
        assert_eq!(catch_async(async { 5 }).await, Ok(5));
    }
}
