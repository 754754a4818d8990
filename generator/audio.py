"""The soundtrack: a quiet musical bed, a percussive hit at every bounce and a chime at every cameo entrance.

Sounds are placed on the exact sample of their event in the scene script (bounce times are solved exactly
by the physics, cameo entrances fall on the first frame that shows the cameo), so picture and sound agree
to well within a frame. Hits are panned to where they happen in the picture. Everything is float64 numpy
seeded from the render seed, so the track is identical on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from generator.script import SceneScript, SoundEvent

SAMPLE_RATE = 48_000
CHANNELS = 2
BED_LEVEL = 0.012
"""Peak of the bed, about -38 dBFS: audible under the hits, far below them for onset detection."""


@dataclass(frozen=True, slots=True)
class AudioTrack:
    samples: np.ndarray
    """float32 (channels, samples) in -1..1."""
    sample_rate: int = SAMPLE_RATE

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.sample_rate


def sample_count(frame_count: int, fps: int, sample_rate: int = SAMPLE_RATE) -> int:
    return round(frame_count * sample_rate / fps)


def _bed(length: int, root_hz: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    t = np.arange(length) / sample_rate
    tone = np.zeros(length)
    for ratio, level in ((1.0, 1.0), (1.5, 0.6), (2.0, 0.45), (2.5, 0.25)):
        phase = rng.uniform(0, 2 * math.pi)
        swell = 0.75 + 0.25 * np.sin(2 * math.pi * t / rng.uniform(3.0, 7.0) + phase)
        tone += level * swell * np.sin(2 * math.pi * root_hz * ratio * t + phase)
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    spectrum[freqs > 4000.0] = 0
    noise = np.fft.irfft(spectrum, n=length)
    noise /= max(float(np.max(np.abs(noise))), 1e-9)
    bed = tone / 2.3 + 0.35 * noise
    fade = min(length, int(0.25 * sample_rate))
    if fade > 1:
        ramp = np.linspace(0.0, 1.0, fade)
        bed[:fade] *= ramp
        bed[-fade:] *= ramp[::-1]
    return BED_LEVEL * bed / max(float(np.max(np.abs(bed))), 1e-9)


def _hit(event: SoundEvent, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    length = int(0.25 * sample_rate)
    t = np.arange(length) / sample_rate
    tone = event.tone_hz or 160.0
    pitch = tone * (1.0 + 0.6 * np.exp(-t / 0.012))
    phase = 2 * math.pi * np.cumsum(pitch) / sample_rate
    body = np.sin(phase) * np.exp(-t / 0.055)
    click = rng.standard_normal(length) * np.exp(-t / 0.004)
    attack = np.minimum(1.0, t / 0.0008)
    return (0.15 + 0.45 * event.strength) * attack * (0.8 * body + 0.35 * click)


def _chime(sample_rate: int) -> np.ndarray:
    length = int(0.6 * sample_rate)
    t = np.arange(length) / sample_rate
    attack = np.minimum(1.0, t / 0.002)
    ring = (
        np.sin(2 * math.pi * 880.0 * t)
        + 0.6 * np.sin(2 * math.pi * 1320.0 * t)
        + 0.3 * np.sin(2 * math.pi * 1760.0 * t)
    )
    return 0.18 * attack * ring * np.exp(-t / 0.18)


def synthesise(
    script: SceneScript, seed: int, bed_root_hz: float = 130.8, sample_rate: int = SAMPLE_RATE
) -> AudioTrack:
    length = sample_count(script.frame_count, script.fps, sample_rate)
    rng = np.random.default_rng([seed, 0xA0])
    mix = np.zeros((CHANNELS, length))
    mix += _bed(length, bed_root_hz, rng, sample_rate)[None, :]
    chime = _chime(sample_rate)
    for number, event in enumerate(script.events):
        start = round(event.time_s * sample_rate)
        if start >= length:
            continue
        if event.kind == "bounce":
            sound = _hit(event, np.random.default_rng([seed, 0xA1, number]), sample_rate)
        else:
            sound = chime
        sound = sound[: length - start]
        angle = (max(-1.0, min(1.0, event.pan)) + 1.0) * math.pi / 4.0
        mix[0, start : start + sound.size] += math.cos(angle) * math.sqrt(2) * sound
        mix[1, start : start + sound.size] += math.sin(angle) * math.sqrt(2) * sound
    return AudioTrack(np.tanh(mix).astype(np.float32), sample_rate)
