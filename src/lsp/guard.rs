//! Panics in handlers become error answers. tower-lsp-server polls every handler inside its one
//! serving future, so a panic there would end the whole session; [`CatchPanics`] wraps the
//! service so that a panicking request is answered with an internal error (-32603), logged once
//! with its method, id and parameters, and the session goes on.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_lsp_server::jsonrpc::{Error, ErrorCode, Request, Response};
use tower_lsp_server::ExitedError;
use tower_service::Service;

thread_local! {
    /// Set while a guarded handler is polled: its panics are logged by the guard, not the hook.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic in a guarded handler happened.
    static LOCATION: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs a panic hook that stays quiet about panics in guarded handlers (the guard logs them
/// with their request) and passes every other panic to the previous hook.
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_HANDLER.with(Cell::get) {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LOCATION.with(|l| *l.borrow_mut() = at);
        } else {
            previous(info);
        }
    }));
}

/// The service, with each request's future guarded.
pub struct CatchPanics<S>(pub S);

impl<S> Service<Request> for CatchPanics<S>
where
    S: Service<Request, Response = Option<Response>, Error = ExitedError>,
    S::Future: Send + 'static,
{
    type Response = Option<Response>;
    type Error = ExitedError;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ExitedError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let mut about = req.method().to_string();
        if let Some(id) = req.id() {
            about.push_str(&format!(" (id {id})"));
        }
        if let Some(params) = req.params() {
            let mut p = params.to_string();
            if p.len() > 300 {
                let mut cut = 300;
                while !p.is_char_boundary(cut) {
                    cut -= 1;
                }
                p.truncate(cut);
                p.push('…');
            }
            about.push_str(&format!(" with params {p}"));
        }
        let id = req.id().cloned();
        Guarded {
            inner: Box::pin(self.0.call(req)),
            id,
            about,
        }
    }
}

/// A request's future that turns a panic into an error answer.
pub struct Guarded<F> {
    inner: Pin<Box<F>>,
    id: Option<tower_lsp_server::jsonrpc::Id>,
    about: String,
}

impl<F> Future for Guarded<F>
where
    F: Future<Output = Result<Option<Response>, ExitedError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let was = IN_HANDLER.with(|f| f.replace(true));
        let polled = catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx)));
        IN_HANDLER.with(|f| f.set(was));
        match polled {
            Ok(p) => p,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                let at = LOCATION.with(|l| std::mem::take(&mut *l.borrow_mut()));
                tracing::error!("the handler of {} panicked at {at}: {msg}", this.about);
                // The future is spent: answer now (a notification gets no answer).
                Poll::Ready(Ok(this.id.take().map(|id| {
                    Response::from_error(
                        id,
                        Error {
                            code: ErrorCode::InternalError,
                            message: format!("internal error in quill: {msg}").into(),
                            data: None,
                        },
                    )
                })))
            }
        }
    }
}
