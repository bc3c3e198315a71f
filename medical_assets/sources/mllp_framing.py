"""MLLP framing (release 2): a TCP byte stream into HL7 messages, and a message into a frame.

A frame is <VT 0x0B> message <FS 0x1C><CR 0x0D>. The decoder takes the stream as it arrives,
frames split across reads or several in one read, and never holds more than `max_frame_bytes`
of it: bytes between frames are counted and dropped, and a frame that grows past the limit is
reported once, with its first bytes so the MSH can still be read, and then skipped to its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
# Enough of an oversized frame to read its MSH segment, which is a few hundred bytes in practice.
HEAD_BYTES = 64 * 1024


class FramingError(ValueError):
    """The stream is not MLLP: the text says what was seen (sizes only), and the connection should close."""


@dataclass(frozen=True)
class Frame:
    """One complete message, without its start and end blocks."""

    message: bytes


@dataclass(frozen=True)
class FrameTooLarge:
    """A frame passed the size limit; the decoder skips the rest of it."""

    head: bytes  # its first bytes, at most HEAD_BYTES
    limit: int


def encode_frame(message: bytes) -> bytes:
    """`message` between the MLLP start block and the end block + carriage return."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class FrameDecoder:
    """Cuts a byte stream into frames; feed it every read, in order, and act on what it yields.

    The end block alone ends a frame: the carriage return after it is one of the stray bytes
    between frames, which are ignored, so a sender that omits it is served as well as one that
    does not. A start block inside a frame means the sender gave up on the frame it was sending
    (a reconnecting or confused sender): the partial frame is dropped, unacknowledged, and
    counted in `abandoned_frames`.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        self.max_frame_bytes = max_frame_bytes
        self.abandoned_frames = 0
        self.ignored_bytes = 0  # stray bytes between frames, over the whole stream
        self._frame = bytearray()
        self._in_frame = False
        self._skipping = False  # inside a frame already reported as too large
        self._stray = 0  # bytes between frames since the last frame ended

    @property
    def in_frame(self) -> bool:
        """A frame has started and not ended: the stream stopping now would cut a message."""
        return self._in_frame or self._skipping

    def feed(self, data: bytes) -> Iterator[Frame | FrameTooLarge]:
        """The frames and oversized frames that `data` completes, in stream order.

        Raises FramingError, after yielding every frame before it, when `max_frame_bytes` arrive
        between frames without a start block."""
        position, end = 0, len(data)
        while position < end:
            if not (self._in_frame or self._skipping):
                start = data.find(START_BLOCK, position)
                stray = (end if start == -1 else start) - position
                self._stray += stray
                self.ignored_bytes += stray
                if self._stray > self.max_frame_bytes:
                    raise FramingError(f"{self._stray} bytes arrived without an MLLP start block (0x0B)")
                if start == -1:
                    return
                self._stray = 0
                self._in_frame = True
                position = start + 1
                continue
            stop = data.find(END_BLOCK, position)
            chunk_end = end if stop == -1 else stop
            restart = data.rfind(START_BLOCK, position, chunk_end)
            if restart != -1:
                self.abandoned_frames += 1
                self._frame.clear()
                self._skipping = False
                self._in_frame = True
                position = restart + 1
            if self._in_frame:
                if len(self._frame) + chunk_end - position > self.max_frame_bytes:
                    needed = max(0, HEAD_BYTES - len(self._frame))
                    head = bytes(self._frame[:HEAD_BYTES]) + data[position : min(chunk_end, position + needed)]
                    self._frame.clear()
                    self._in_frame = False
                    self._skipping = True
                    yield FrameTooLarge(head, self.max_frame_bytes)
                elif stop != -1:
                    if self._frame:
                        self._frame += data[position:stop]
                        message = bytes(self._frame)
                        self._frame.clear()
                    else:
                        message = data[position:stop]
                    self._in_frame = False
                    yield Frame(message)
                else:
                    self._frame += data[position:end]
            if stop == -1:
                return
            self._in_frame = self._skipping = False
            position = stop + 1
