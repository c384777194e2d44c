"""Route: GET|POST /v1/metrics, the sandbox's resource samples (see metrics.py for what they measure)."""

import selectors
import time

from .common import STATE, ClientGone, dumps, new_selector
from .execution import peer_closed
from .sinks import StreamSink

MIN_INTERVAL = 0.1
MAX_INTERVAL = 3600.0


class MetricsRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def route_metrics(self):
        """?interval=SECONDS (default 1) &follow=0|1. Without follow: one JSON sample, measured over the
        interval. With follow: NDJSON, one sample per interval until the client goes. POST answers the
        same (a quick tunnel holds a GET's streamed body back; see PROCESS_ROUTES)."""
        interval = self.seconds_param("interval", MIN_INTERVAL, MAX_INTERVAL)
        if interval is None:
            interval = 1.0
        follow = self.bool_param("follow", False)
        from .metrics import Meter  # at the first sample: the server starts without it

        meter = Meter()
        if not follow:
            self.wait_or_gone(interval)
            return self.respond_json(meter.sample())
        sink = StreamSink(self, "utf-8")
        sink.begin()
        # Watching a sandbox is not using it: a stream of samples does not hold off the idle timeout
        # (dispatch counted this request in flight; it is counted out while it streams).
        STATE.end()
        try:
            self.follow_metrics(meter, sink, interval)
        finally:
            STATE.begin()

    def follow_metrics(self, meter, sink, interval):
        due = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= due:
                sink.pending.append(dumps(meter.sample()) + b"\n")
                due = max(due + interval, now)
            else:
                # A long interval is spanned by pings, so that the client's silence bound holds.
                self.wait_or_gone(min(due - now, max(0.01, sink.next_tick(now))))
            sink.flush(time.monotonic())

    def wait_or_gone(self, seconds):
        """Sleeps `seconds`, or raises ClientGone as soon as the client hangs up."""
        deadline = time.monotonic() + seconds
        sel = new_selector()
        try:
            sel.register(self.connection, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if sel.select(left) and peer_closed(self.connection):
                    raise ClientGone()
                # Readable but open: the client sent more (a pipelined request); only time ends the wait.
                time.sleep(min(left, 0.05))
        finally:
            sel.close()
