"""G.711 mu-law and resampling between Twilio Media Streams and the voice pipeline.

Twilio carries 8 kHz mu-law in 20 ms frames; the pipeline takes 16 kHz PCM16 from the caller
and produces 24 kHz PCM16 for the caller. PCM16 is little-endian, mono, full scale 32768.

Resampling uses soxr "HQ" (libsoxr's 20-bit recipe: soxr.h documents SOXR_HQ as
SOXR_20_BITQ, which soxr_quality_spec() turns into 20 x 6.02 = 120 dB of stop-band rejection,
a linear-phase filter, and a pass band flat within 0.01 dB (SOXR_ROLLOFF_SMALL) up to 0.913 of
the lower Nyquist frequency: 3.65 kHz for the 8 kHz side, above the 3.4 kHz telephone band).
MQ is a 16-bit recipe with a 0.35 dB pass-band droop and holds back as much audio as HQ;
LQ holds back less but its pass band ends at 2.7 kHz (0.676 of Nyquist); VHQ holds back
twice as much outbound (~150 ms). QQ (cubic) holds back nothing but does not filter: all
of the 24 kHz signal above 4 kHz would alias onto the phone line (tests: 0 dB rejection).

The price of HQ is latency: libsoxr filters in blocks, so with 20 ms chunks it emits bursts
and holds back up to ~115 ms inbound (8 -> 16 kHz) and ~75 ms outbound (24 -> 8 kHz); see
`InboundAudio` and `OutboundAudio`. The filter's group delay itself is compensated by
libsoxr: what comes out is time-aligned with what went in, only later.

Samples cross soxr as float32, not int16: libsoxr adds TPDF dither to int16 output with a
clock-seeded generator, which would make the output differ from run to run.
"""

from __future__ import annotations

import numpy as np
import soxr  # type: ignore[import-untyped]  # ships without type hints
from numpy.typing import NDArray

ULAW_RATE = 8_000
INBOUND_RATE = 16_000
OUTBOUND_RATE = 24_000
ULAW_FRAME_BYTES = 160  # 20 ms at 8 kHz, one byte a sample: Twilio's media frame
RESAMPLE_QUALITY = "HQ"

_BIAS = 0x84
_CLIP = 32635


def _ulaw_decode_table() -> NDArray[np.int16]:
    """The 256 PCM16 values of the mu-law codes (G.711: codes are stored bit-inverted)."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype("<i2")


def _ulaw_encode(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    """G.711 mu-law codes for int16 samples, vectorised.

    G.711 mu-law codes 14-bit samples, so the two low bits of PCM16 are dropped first
    (an arithmetic shift, which floors negatives, as the reference implementations do).
    """
    value = (pcm.astype(np.int32) >> 2) << 2
    sign = np.where(value < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(value), _CLIP) + _BIAS
    # The exponent is the position of the highest set bit above bit 7 (0..7).
    exponent = np.zeros_like(magnitude)
    for bit in range(8, 15):
        exponent += magnitude >= (1 << bit)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return np.asarray(codes, dtype=np.uint8)


_DECODE = _ulaw_decode_table()
# One lookup per sample at run time: the table is indexed by the int16 bit pattern.
_ENCODE = _ulaw_encode(np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16))


def ulaw_to_pcm16(data: bytes) -> bytes:
    """PCM16 (little-endian) for G.711 mu-law bytes: two output bytes per input byte."""
    return bytes(_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes())


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """G.711 mu-law bytes for little-endian PCM16; ValueError for half a sample."""
    if len(pcm) % 2:
        raise ValueError(f"PCM16 data of {len(pcm)} bytes is not whole 16-bit samples")
    return bytes(_ENCODE[np.frombuffer(pcm, dtype="<u2")].tobytes())


class PcmResampler:
    """A stateful PCM16 -> PCM16 resampler (soxr.ResampleStream) for a stream of chunks.

    The output of consecutive `process` calls equals resampling the whole signal at once, but
    libsoxr holds back a block of output (see `held_back_samples`) until enough input follows.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
        )

    def process(self, samples: NDArray[np.int16]) -> NDArray[np.int16]:
        """Resampled int16 samples for the next int16 samples of the stream."""
        return _to_int16(self._stream.resample_chunk(_to_float(samples)))

    def flush(self) -> NDArray[np.int16]:
        """The held-back tail (the filter is fed silence past the end), then a fresh filter."""
        tail = _to_int16(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        self._stream.clear()
        return tail

    def reset(self) -> None:
        """Forget the stream: drop the held-back output and the filter's history."""
        self._stream.clear()

    def held_back_samples(self) -> float:
        """Output samples the filter owes for input already given (libsoxr's delay())."""
        return float(self._stream.delay())


def _to_float(samples: NDArray[np.int16]) -> NDArray[np.float32]:
    return samples.astype(np.float32) / np.float32(32768.0)


def _to_int16(samples: NDArray[np.float32]) -> NDArray[np.int16]:
    # The filter can overshoot full scale a little (Gibbs); clip rather than wrap around.
    return np.asarray(np.clip(np.rint(samples * 32768.0), -32768, 32767), dtype=np.int16)


class InboundAudio:
    """Caller audio: 8 kHz mu-law (any number of bytes) -> 16 kHz PCM16, across chunks.

    Latency: with 20 ms frames libsoxr emits ~104 ms bursts; the audio is up to ~115 ms late.
    Twilio sends frames through silence too, so nothing stays stuck in the filter.
    """

    def __init__(self) -> None:
        self._resampler = PcmResampler(ULAW_RATE, INBOUND_RATE)

    def convert(self, ulaw: bytes) -> bytes:
        samples = _DECODE[np.frombuffer(ulaw, dtype=np.uint8)]
        return bytes(self._resampler.process(samples).astype("<i2").tobytes())


class OutboundAudio:
    """Agent audio: 24 kHz PCM16 (any number of bytes) -> 8 kHz mu-law, across chunks.

    Latency: up to ~75 ms of audio is held back in the filter, so the end of a reply stays
    there until more audio comes: call `flush` when a reply is complete. An odd trailing byte
    (half a sample) is kept for the next call.
    """

    def __init__(self) -> None:
        self._resampler = PcmResampler(OUTBOUND_RATE, ULAW_RATE)
        self._odd_byte = b""

    def convert(self, pcm24: bytes) -> bytes:
        data = self._odd_byte + pcm24
        usable = len(data) - len(data) % 2
        self._odd_byte = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2")
        return _encode_samples(self._resampler.process(samples))

    def flush(self) -> bytes:
        """The mu-law still held in the filter (the end of a reply); then a fresh filter."""
        self._odd_byte = b""
        return _encode_samples(self._resampler.flush())

    def reset(self) -> None:
        """After a `clear` (barge-in): a fresh filter, nothing of the cut reply left in it."""
        self._odd_byte = b""
        self._resampler.reset()


def _encode_samples(samples: NDArray[np.int16]) -> bytes:
    return bytes(_ENCODE[samples.astype("<i2").view("<u2")].tobytes())
