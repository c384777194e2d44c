"""Routes: a background process's stdin and output (/v1/processes/{id}/stdin and /output)."""

import time

from .background import BGPROCS, FOLLOW_POLL
from .common import HttpError, bad_request, dumps
from .sinks import StreamSink
from .stdin import STDIN_BODY_LIMIT, STDIN_READ, STDIN_STALL


def check_offsets(bg, offsets):
    """400 for an offset past what the command has written (under bg.cond)."""
    for name in ("stdout", "stderr"):
        if offsets[name] > bg.total[name]:
            message = "%s_offset=%d is past the %d bytes %s has written to %s so far"
            raise bad_request(message % (name, offsets[name], bg.total[name], bg.id, name))


class ProcessIoRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def route_process_stdin(self, key):
        """POST /v1/processes/{id}/stdin?offset=N&eof=0|1: the body is stdin from offset N."""
        bg = BGPROCS.find(key)
        pipe = getattr(bg.spec, "stdin_pipe", None)
        if pipe is None:
            raise HttpError(
                409,
                "process %s has no writable stdin: start it with \"stdin_pipe\": true to write to it" % bg.id,
                "stdin_not_piped",
            )
        offset = self.int_param("offset")
        if offset is None:
            raise bad_request("missing query parameter `offset` (the stdin offset of the body's first byte)")
        eof = self.bool_param("eof", False)
        body = self._body
        if body.chunked:
            raise HttpError(411, "the stdin route needs a Content-Length (send the body in bounded parts)", "length_required")
        if body.remaining > STDIN_BODY_LIMIT:
            message = "stdin body too large: %d bytes (at most 16 MiB per request; send the rest at the next offset)"
            raise HttpError(413, message % body.remaining, "too_large", close=True)
        stall = STDIN_STALL
        if not pipe.take_turn(offset, stall):
            if offset > pipe.written and not pipe.closed:
                # The bytes before this body did not come (from another connection) in time.
                raise HttpError(
                    409,
                    "stdin gap: this body starts at offset %d but %d bytes were written; send from offset %d"
                    % (offset, pipe.written, pipe.written),
                    "stdin_gap",
                )
            # Another request is still writing (to a command that does not read): try again later.
            return self.respond_json({"id": bg.id, "offset": pipe.written, "closed": pipe.closed})
        try:
            skip = pipe.written - offset
            complete = not pipe.closed
            buf = memoryview(bytearray(min(STDIN_READ, max(body.remaining, 1))))
            while complete and not body.done:
                n = body.read_into(buf)
                if skip >= n:
                    skip -= n
                    continue
                view = buf[skip:n]
                skip = 0
                while view:
                    n = pipe.write(view, stall)
                    if not n:
                        complete = False  # closed, or stalled: the answer's offset says how far it got
                        break
                    view = view[n:]
            if complete and eof:
                pipe.close()
            self.respond_json({"id": bg.id, "offset": pipe.written, "closed": pipe.closed})
        finally:
            pipe.release_turn()

    def route_process_ack(self, key):
        """POST /v1/processes/{id}/ack?stdout_offset=N&stderr_offset=M: the client holds each stream
        up to these raw byte offsets (see BgProcess.ack)."""
        bg = BGPROCS.find(key)
        pos = {"stdout": self.int_param("stdout_offset", 0), "stderr": self.int_param("stderr_offset", 0)}
        with bg.cond:
            check_offsets(bg, pos)
        bg.ack(pos)
        self.respond_json({"id": bg.id, "stdout_offset": bg.acked["stdout"], "stderr_offset": bg.acked["stderr"]})

    def route_process_output(self, key):
        bg = BGPROCS.find(key)
        follow = self.bool_param("follow", False)
        encoding = self.param("encoding", required=False) or "utf-8"
        if encoding in ("utf-8", "utf8"):
            encoding = "utf-8"
        elif encoding != "base64":
            raise bad_request("query parameter `encoding` must be utf-8 or base64, got %r" % encoding)
        offsets = None
        out, err = self.int_param("stdout_offset"), self.int_param("stderr_offset")
        if out is not None or err is not None:
            offsets = {"stdout": out or 0, "stderr": err or 0}
        self.follow_output(bg, follow, encoding, offsets)

    def follow_output(self, bg, follow, encoding, offsets, attached=False, start_event=False):
        """Stream `bg`'s buffered output (then, with `follow`, its live output and exit) as NDJSON.

        `offsets` (raw byte offset per stream) resumes where a reader left off; without them the
        stream starts at the oldest byte still buffered. A follower of an exec is one of its
        readers: while one is attached the exec is not abandoned, and what it has sent moves the
        back-pressure window. `attached`: the caller already counted this reader (POST /v1/exec), whose
        stream begins with the `start` event."""
        sink = StreamSink(self, encoding)
        reader = bg.kind == "exec" and follow
        try:
            with bg.cond:
                held = dict(bg.dropped)  # the oldest offset still buffered, per stream
                if offsets is not None:
                    check_offsets(bg, offsets)
                    pos = {name: max(offsets[name], held[name]) for name in held}
                    missing = {name: max(0, held[name] - offsets[name]) for name in held}
                else:
                    pos, missing = dict(held), held
                if reader and not attached:
                    bg.attach()
                    attached = True
                if reader and offsets is not None:
                    bg.ack(pos)  # a client resuming at an offset holds everything before it
                upto = bg.seq  # without follow: only what is buffered now...
                result = bg.result  # ...and the exit only if that is all there will be
            first = b""
            if start_event:
                first = dumps({"event": "start", "id": bg.id, "pid": bg.pid}) + b"\n"
            if missing["stdout"] or missing["stderr"]:
                first += dumps({"event": "dropped", "stdout": missing["stdout"], "stderr": missing["stderr"]}) + b"\n"
            sink.begin(first)
            # The exec's own stream and resumes at an offset are its client's: they wait for its
            # acknowledgements. Another follower (no offsets) does not, or it would stall.
            windowed = reader and (start_event or offsets is not None)
            self.stream_chunks(bg, sink, follow, pos, upto, result, reader, windowed)
        finally:
            if attached:
                bg.detach()

    def stream_chunks(self, bg, sink, follow, pos, upto, result, reader, windowed=False):
        last = 0
        held = False  # the ack window stopped the last round short
        acked = None  # what the client had acknowledged when it did
        while True:
            with bg.cond:
                if held and bg.acked == acked:
                    # Until the client acknowledges more (ack() notifies) or a ping is due. An ack that
                    # came while the last round was sending moved bg.acked already: no wait then.
                    bg.cond.wait(min(FOLLOW_POLL, sink.next_tick(time.monotonic())))
                chunks = bg.collect(last, bg.seq if follow else upto)
                if not chunks and follow and bg.result is None:
                    bg.cond.wait(min(FOLLOW_POLL, sink.next_tick(time.monotonic())))
                    chunks = bg.collect(last, bg.seq)
                if follow:
                    # Output is buffered before the result is set: caught up
                    # with a finished process, its exit is the next event.
                    result = bg.result
                    caught_up = not chunks or chunks[-1][0] >= bg.seq
                else:
                    caught_up = not chunks or chunks[-1][0] >= upto
                rooms = {name: bg.room(name, pos[name]) for name in pos} if windowed else {}
                acked = dict(bg.acked)
            held = False
            for seq, name, start, chunk in chunks:
                data = chunk
                if start > pos[name]:  # this follower fell behind the ring
                    gap = {"event": "dropped", "stdout": 0, "stderr": 0}
                    gap[name] = start - pos[name]
                    sink.pending.append(dumps(gap) + b"\n")
                elif start < pos[name]:  # a coalesced chunk whose prefix was sent, or before a resume offset
                    data = chunk[pos[name] - start :]
                room = rooms.get(name)
                if room is not None and len(data) > room:
                    # Send what the window allows; the chunk is collected again (its seq stays after
                    # `last`) and its rest sent after an acknowledgement. Later chunks wait too: events
                    # keep their order.
                    data = data[: max(room, 0)]
                    held = True
                else:
                    last = seq
                if room is not None:
                    rooms[name] = room - len(data)
                pos[name] = max(pos[name], start) + len(data)
                if data:
                    sink.output(name, data)
                if held:
                    caught_up = False
                    break
            if caught_up and (result is not None or not follow):
                sink.eof("stdout")
                sink.eof("stderr")
                sink.finish(result)
                if reader:
                    bg.advance(pos)
                return
            sink.flush(time.monotonic())
            if reader:
                bg.advance(pos)
            if not chunks or held:
                self.client_still_there()
