"""A deadline for a request's headers: uvicorn waits for ever on a connection that opened and never finished its
headers (200 such half-open connections were all held after 15 s), a slow-loris a loopback server sees too."""
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_header_deadline(seconds):
    """uvicorn's h11 protocol, closing a connection whose next request's headers are not all in `seconds` after
    it opened, or after the last response ended (a kept-alive connection)."""

    class HeaderDeadline(H11Protocol):
        deadline = None

        def arm(self):  # closed as uvicorn closes an idle kept-alive connection
            self.deadline = self.loop.call_later(seconds, self.timeout_keep_alive_handler)

        def disarm(self):
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self.arm()

        def handle_events(self):
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers arrived: the body has its own timeout
                self.disarm()

        def on_response_complete(self):
            self.arm()  # first: uvicorn's goes on to a pipelined request at once, whose headers disarm it
            super().on_response_complete()

        def connection_lost(self, exc):
            self.disarm()
            super().connection_lost(exc)

    return HeaderDeadline
