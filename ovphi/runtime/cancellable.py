"""OpenVINO inference that a stop can interrupt. A native call does not see Python's signals: a prefill or a
vision encode ran to its end (minutes on a 2-core CPU at full size) before Ctrl-C, SIGTERM or a client that went
away was noticed. Here the call runs asynchronously, and its wait gives way to the engine's stop event every
POLL_MS: the request is cancelled and Cancelled is raised, so the engine can forget its half-written KV cache."""
POLL_MS = 50


class Cancelled(Exception):
    """The inference was cancelled by a stop."""


def wait_or_cancel(request, stop):
    """Wait for an InferRequest started with start_async; cancel it and raise Cancelled once stop is set."""
    while not request.wait_for(POLL_MS):
        if stop.is_set():
            request.cancel()
            try:
                request.wait()  # until the plugin has let go of the request's state
            except RuntimeError:  # "Infer Request was canceled"
                pass
            raise Cancelled


class CancellableRequest:
    """An InferRequest (optimum's language model calls start_async, then wait) whose wait gives way to a stop
    while `cancellable` is set: a prefill, not a one-token decode step the turn's loop ends by itself."""

    def __init__(self, request, stop):
        self._request, self._stop, self.cancellable = request, stop, False

    def wait(self):
        if self.cancellable:
            wait_or_cancel(self._request, self._stop)
        else:
            self._request.wait()

    def __getattr__(self, name):
        return getattr(self._request, name)


class CancellableModel:
    """A CompiledModel as optimum's model parts call it, compiled(inputs) -> results, on one infer request whose
    wait gives way to a stop."""

    def __init__(self, compiled, stop):
        self._compiled, self._request, self._stop = compiled, compiled.create_infer_request(), stop

    def __call__(self, inputs, *args, **kwargs):
        self._request.start_async(inputs)
        wait_or_cancel(self._request, self._stop)
        return self._request.results

    def __getattr__(self, name):
        return getattr(self._compiled, name)
