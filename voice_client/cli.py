"""`voice-agent`: the console client.

    VOICE_AGENT_TOKEN=ct_... voice-agent talk --url ws://127.0.0.1:8000 --text "hello"
    VOICE_AGENT_API_KEY=vp_... voice-agent talk --url ws://127.0.0.1:8000 --agent 3 \\
        --wav question.wav --save reply.wav

Credentials come from the environment or a file (credentials.py says why not argv).

Events go to stdout, one per line; problems go to stderr as one `voice-agent: ...` line.
Exit status: 0 after a normal end, 1 when the session was refused or ended abnormally (or
no token could be had), 2 for bad arguments or an unreadable WAV.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from voice_client import audio, protocol
from voice_client.credentials import API_KEY_ENV, TOKEN_ENV, Credential, CredentialError, resolve
from voice_client.eventlog import EventLog
from voice_client.playback import PlaybackReporter
from voice_client.render import render
from voice_client.session import ClientNotice, LiveSession, SessionEnd, SessionRefused
from voice_client.tokens import TokenRequestFailed, request_token

PROG = "voice-agent"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# After the last input, how long to wait for the model's answer to finish.
REPLY_TIMEOUT = 30.0
# After the WAV, once some turn has completed, this much quiet means the model is done.
SETTLE_SECONDS = 2.0


class UsageError(Exception):
    """Bad arguments or input files: exit 2 with the message."""


@dataclass
class Transcript:
    """What the console heard: printed one line per event, except that streamed pieces of
    text are joined into one line per utterance (with the turn's latest usage after it);
    kept for waiting on turns and saving the reply."""

    out: TextIO
    quiet: bool
    reply_audio: bytearray = field(default_factory=bytearray)
    turns_completed: int = 0
    turn_audio: int = 0  # bytes of model audio in the turn so far
    ended: bool = False
    last_activity: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    pieces: dict[str, list[str]] = field(default_factory=dict)
    usage: protocol.Usage | None = None

    def _print(self, line: str | None) -> None:
        if line is not None:
            print(line, file=self.out, flush=True)

    def _flush(self, *, turn_over: bool) -> None:
        for kind in ("transcript.input", "text", "transcript.output"):
            if text := "".join(self.pieces.pop(kind, [])):
                self._print(render(protocol.TextEvent(kind, {}, text=text), quiet=self.quiet))
        if self.usage is not None:
            self._print(render(self.usage, quiet=self.quiet))
            self.usage = None
        if turn_over:
            if self.turn_audio and not self.quiet:
                seconds = self.turn_audio / audio.SAMPLE_WIDTH / audio.OUTPUT_RATE
                self._print(f"audio: {seconds:.2f} s")
            self.turn_audio = 0

    def take(self, item: protocol.Event | bytes | ClientNotice) -> None:
        self.last_activity = time.monotonic()
        self.changed.set()
        if isinstance(item, bytes):
            self.reply_audio += item
            self.turn_audio += len(item)
            return
        if isinstance(item, protocol.TextEvent):
            self.pieces.setdefault(item.type, []).append(item.text)
            return
        if isinstance(item, protocol.Usage):
            self.usage = item  # a running total: the last one is the turn's
            return
        over = isinstance(item, protocol.Event) and item.type in ("turn_complete", "interrupted")
        self._flush(turn_over=over)
        if isinstance(item, protocol.Event) and item.type == "turn_complete":
            self.turns_completed += 1
        self._print(render(item, quiet=self.quiet))

    def finish(self) -> None:
        self._flush(turn_over=True)
        self.ended = True
        self.changed.set()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Talk to a voice agent.")
    commands = parser.add_subparsers(dest="command", required=True)
    talk = commands.add_parser(
        "talk",
        help="open a session and talk to an agent",
        description="Open a session, send text, a WAV file or the microphone, print events.",
    )
    talk.add_argument(
        "--url", required=True, help="ws(s)://host[:port][/prefix/ws/v1/live] of the platform"
    )
    talk.add_argument(
        "--token-file", type=Path, help=f"read the client token from this file ({TOKEN_ENV})"
    )
    talk.add_argument(
        "--api-key-file",
        type=Path,
        help=f"read a tenant API key from this file and mint a token for --agent ({API_KEY_ENV})",
    )
    talk.add_argument("--token", help=f"a client token (ct_...); visible in ps: prefer {TOKEN_ENV}")
    talk.add_argument("--api-key", help=f"a tenant API key; visible in ps: prefer {API_KEY_ENV}")
    talk.add_argument("--agent", type=int, help="the agent id, with an API key")
    talk.add_argument("--user-id", default="voice-agent-console", help="end user, with an API key")
    talk.add_argument("--origin", help="send this Origin header (as a browser would)")
    talk.add_argument("--wav", type=Path, help="stream this WAV file (any rate, mono or stereo)")
    talk.add_argument("--mic", action="store_true", help="stream the microphone (sounddevice)")
    talk.add_argument(
        "--text", action="append", default=[], help="send this text turn (repeatable)"
    )
    talk.add_argument("--save", type=Path, help="save the model's audio to this WAV file")
    talk.add_argument("--quiet", action="store_true", help="print only what is said")
    talk.add_argument(
        "--log-events",
        type=Path,
        help="append every JSON event from the server to this file (resume tokens masked)",
    )
    talk.add_argument(
        "--playback-report",
        action="store_true",
        help="send playback.started when a reply's first audio arrives (this console plays "
        "nothing, so the server then times arrival at the console, not hearing)",
    )
    talk.add_argument(
        "--max-resumes", type=int, default=6, help="reconnect tries in a row after a drop"
    )
    talk.add_argument(
        "--reply-timeout", type=float, default=REPLY_TIMEOUT, help="seconds to wait for replies"
    )
    return parser


def _credential(args: argparse.Namespace) -> Credential:
    try:
        credential = resolve(
            token=args.token,
            token_file=args.token_file,
            api_key=args.api_key,
            api_key_file=args.api_key_file,
            environ=os.environ,
        )
    except CredentialError as exc:
        raise UsageError(str(exc)) from None
    if credential.kind == "api_key" and args.agent is None:
        raise UsageError(f"an API key (from {credential.source}) needs --agent")
    return credential


def _check(args: argparse.Namespace, credential: Credential) -> None:
    if args.wav is not None and args.mic:
        raise UsageError("give --wav or --mic, not both")
    if not all(text.strip() for text in args.text):
        raise UsageError("--text is empty")
    try:
        protocol.live_url(args.url, token=credential.value)  # validates the ws(s):// URL
        if credential.kind == "api_key":
            protocol.http_base(args.url)  # where the token is minted
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from None
    if args.mic:
        try:
            import sounddevice  # type: ignore[import-not-found]  # noqa: F401
        except (ImportError, OSError):
            raise UsageError(
                "--mic needs the sounddevice package and a PortAudio library "
                "(pip install sounddevice); use --wav instead"
            ) from None


async def _until_reply(transcript: Transcript, turns_before: int, within: float) -> bool:
    """Wait for a turn_complete beyond ``turns_before``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while transcript.turns_completed <= turns_before and not transcript.ended:
                transcript.changed.clear()
                await transcript.changed.wait()
            return True
    return False


async def _stream_wav(
    session: LiveSession, pcm: bytes, transcript: Transcript, wait: float
) -> None:
    """The WAV at real time in 100 ms frames, then audio_end, then wait for the answer."""
    turns_before = transcript.turns_completed
    loop = asyncio.get_running_loop()
    begin = loop.time()
    for n, frame in enumerate(audio.frames(pcm)):
        # Paced against the start, not frame by frame, so the stream does not drift slow.
        await asyncio.sleep(max(0.0, begin + n * audio.FRAME_MS / 1000 - loop.time()))
        await session.send_audio(frame)
    await session.audio_end()
    deadline = loop.time() + wait
    # The model's VAD may have ended the turn (and answered) while the WAV still played;
    # then a quiet spell means it is done. Otherwise wait for the answer to the WAV's turn.
    while loop.time() < deadline and not transcript.ended:
        done = transcript.turns_completed > turns_before
        if done and time.monotonic() - transcript.last_activity >= SETTLE_SECONDS:
            return
        transcript.changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.25):
                await transcript.changed.wait()


async def _stream_mic(session: LiveSession) -> None:
    """The microphone until Ctrl-C, in 100 ms frames at 16 kHz."""
    import sounddevice

    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=50)

    def captured(data: object, frames: int, at: object, status: object) -> None:
        pcm = bytes(data)  # type: ignore[call-overload]  # a CFFI buffer
        loop.call_soon_threadsafe(chunks.put_nowait, pcm)

    print(f"{PROG}: listening; Ctrl-C to stop", file=sys.stderr)
    stream = sounddevice.RawInputStream(
        samplerate=audio.INPUT_RATE,
        channels=1,
        dtype="int16",
        blocksize=audio.frame_bytes() // audio.SAMPLE_WIDTH,
        callback=captured,
    )
    try:
        with stream:
            while True:
                await session.send_audio(await chunks.get())
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C (asyncio.run cancels the main task on SIGINT) ends the speech, not the
        # session: take the cancellation back and close properly.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    await session.audio_end()


def _read_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Feed stdin's lines into ``lines`` (None at its end), from a daemon thread: a thread
    blocked in readline() must not keep the process alive after the session ended."""

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="voice-agent-stdin", daemon=True).start()


async def _stdin_lines(session: LiveSession, transcript: Transcript, wait: float) -> None:
    """Each line typed (or piped) is a text turn; the answer is awaited before the next."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _read_lines(asyncio.get_running_loop(), lines)
    while not transcript.ended:
        next_line = asyncio.create_task(lines.get())
        ended = asyncio.create_task(session.wait_end())
        await asyncio.wait({next_line, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if not next_line.done():
            next_line.cancel()
            return
        line = next_line.result()
        if line is None:
            return
        if text := line.strip():
            before = transcript.turns_completed
            await session.send_text(text)
            await _until_reply(transcript, before, wait)


async def _talk(args: argparse.Namespace, credential: Credential) -> int:
    pcm = b""
    if args.wav is not None:
        try:
            pcm = audio.read_wav_pcm16(args.wav)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {args.wav}: {exc}") from None
        if not pcm:
            raise UsageError(f"{args.wav} holds no audio")
    token = credential.value
    if credential.kind == "api_key":
        try:
            token = await asyncio.to_thread(
                request_token,
                args.url,
                api_key=credential.value,
                agent_id=args.agent,
                user_id=args.user_id,
            )
        except TokenRequestFailed as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    transcript = Transcript(out=sys.stdout, quiet=args.quiet)
    events: EventLog | None = None
    if args.log_events is not None:
        try:
            events = EventLog(args.log_events)
        except OSError as exc:
            raise UsageError(f"cannot write --log-events {args.log_events}: {exc}") from None
    session = LiveSession(
        args.url,
        token,
        origin=args.origin,
        max_attempts=args.max_resumes,
        on_frame=events.write if events is not None else None,
    )
    printer: asyncio.Task[None] | None = None
    # The console plays nothing (it may save the reply): a reply's first audio counts as
    # heard the moment it arrives, as with a player that has no buffer.
    reporter = PlaybackReporter() if args.playback_report else None

    async def show() -> None:
        async for item in session.received():
            if reporter is not None and reporter.take(item):
                await session.playback_started()
            transcript.take(item)
        transcript.finish()

    try:
        printer = asyncio.create_task(show())
        try:
            await session.start()
        except SessionRefused as refused:
            return _report(refused.end)
        if session.end is None:
            for text in args.text:
                before = transcript.turns_completed
                await session.send_text(text)
                await _until_reply(transcript, before, args.reply_timeout)
        if session.end is None and pcm:
            await _stream_wav(session, pcm, transcript, args.reply_timeout)
        if session.end is None and args.mic:
            await _stream_mic(session)
        interactive = sys.stdin is not None and sys.stdin.isatty()
        if session.end is None and (interactive or not (args.text or pcm or args.mic)):
            await _stdin_lines(session, transcript, args.reply_timeout)
        end = session.end or await session.close()
        return _report(end)
    finally:
        await session.abort()
        if printer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await printer
        if events is not None:
            events.close()
        # Only a session that started has a reply to save: a refused one would replace the
        # user's file (maybe the reply of an earlier run) with an empty WAV.
        if args.save is not None and (session.started is not None or transcript.reply_audio):
            rate = session.started.output_rate if session.started else audio.OUTPUT_RATE
            audio.write_wav(args.save, bytes(transcript.reply_audio), rate=rate)


def _report(end: SessionEnd) -> int:
    if end.ok:
        return EXIT_OK
    print(f"{PROG}: {end.describe()}", file=sys.stderr)
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        credential = _credential(args)
        _check(args, credential)
        return asyncio.run(_talk(args, credential))
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_FAILED
