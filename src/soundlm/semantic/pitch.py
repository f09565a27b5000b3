"""Frame features for music: log energies per semitone (`CQTFeatures`) and chroma (`ChromaFeatures`).

Speech features (MFCC, log-mel) smear pitch: a mel band above 1 kHz spans several
semitones and the cepstrum throws the harmonic fine structure away, so units clustered
from them follow timbre and loudness more than notes. These features keep pitch:

- `CQTFeatures`: a pseudo constant-Q spectrum, STFT power pooled by triangles one semitone
  wide (centred on the equal-tempered pitches, A4 = 440 Hz), log-compressed. Not a true
  CQT (one window length for every bin, so the lowest octave is coarse): the 256 ms window
  resolves semitones from about C3 (130 Hz) up.
- `ChromaFeatures`: the same semitone energies folded onto the 12 pitch classes (C first,
  as `soundlm.music.analysis`), each frame scaled to a maximum of 1; optionally the 6-D
  tonal centroid of Harte, Sandler & Gasser (2006) and the onset strength (half-wave
  rectified rise of log mel energies over 40 ms frames: the 256 ms pitch window would
  announce a note 128 ms early), so units also mark note starts.

Both run at the built-in features' framing: T = floor(S / 320) frames at 50 Hz for 16 kHz.
"""

from __future__ import annotations

import math

import torch

from torch import nn

from soundlm.semantic.features import MelFeatures, _FramedFeatures

A4_MIDI, A4_HZ = 69, 440.0


def semitone_filterbank(n_fft: int, sample_rate: int, midi_low: int, num_bins: int) -> torch.Tensor:
    """Triangular filters [n_fft // 2 + 1, num_bins], one per semitone from MIDI note `midi_low`.

    Filter m weighs an FFT bin at MIDI pitch p by max(0, 1 - 2 |p - (midi_low + m)|): 1 on
    the note, 0 half-way to the next (as `soundlm.music.analysis.chroma`), so the skirt of a
    loud note's spectral peak does not leak onto its neighbours and energy between two
    semitones counts little.
    """
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    midi = A4_MIDI + 12 * torch.log2(freqs.clamp(min=1e-6) / A4_HZ)  # [F]
    centres = midi_low + torch.arange(num_bins, dtype=torch.float64)  # [num_bins]
    fb = (1 - 2 * (midi[:, None] - centres[None, :]).abs()).clamp(min=0)  # [F, num_bins]
    fb[0] = 0  # DC has no pitch
    return fb.float()


def tonal_centroid_matrix() -> torch.Tensor:
    """[12, 6]: pitch class -> the circle of fifths, minor thirds and major thirds (Harte 2006; r = 1, 1, 0.5)."""
    pc = torch.arange(12, dtype=torch.float64)
    cols = []
    for radius, angle in ((1.0, 7 * math.pi / 6), (1.0, 3 * math.pi / 2), (0.5, 2 * math.pi / 3)):
        cols += [radius * torch.sin(pc * angle), radius * torch.cos(pc * angle)]
    return torch.stack(cols, dim=1).float()


class _SemitoneFeatures(_FramedFeatures):
    """Log semitone energies of 256 ms Hann frames every 20 ms (no pre-emphasis: low notes matter)."""

    def __init__(self, sample_rate: int, hop_length: int, win_length: int, n_fft: int, midi_low: int,
                 num_bins: int, preemphasis: float):
        super().__init__(sample_rate, hop_length, win_length, n_fft, preemphasis)
        top_hz = A4_HZ * 2 ** ((midi_low + num_bins - 1 - A4_MIDI) / 12)
        if top_hz > sample_rate / 2:
            raise ValueError(f"the top semitone bin (MIDI {midi_low + num_bins - 1}, {top_hz:.0f} Hz) lies above "
                             f"Nyquist ({sample_rate / 2:.0f} Hz); lower midi_low or num_bins")
        self.midi_low = midi_low
        self.num_bins = num_bins
        # Hann, not the speech features' Hamming: its side lobes fall off 18 dB per octave, so
        # a loud note does not leak a floor of energy onto every other pitch class.
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
        self.register_buffer("semitone_fb", semitone_filterbank(n_fft, sample_rate, midi_low, num_bins),
                             persistent=False)

    def log_semitones(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 1, S] -> log energy per semitone [B, T, num_bins]."""
        return torch.log(torch.clamp(self.power_spectrum(audio) @ self.semitone_fb, min=1e-10))

    def _semitone_config(self) -> dict:
        return {**self._base_config(), "midi_low": self.midi_low, "num_bins": self.num_bins}


class CQTFeatures(_SemitoneFeatures):
    """Log pseudo-CQT frames: D = num_bins semitones (84 from C2, 65 Hz, to B8 at 16 kHz)."""

    def __init__(self, sample_rate: int = 16_000, hop_length: int = 320, win_length: int = 4096,
                 n_fft: int = 4096, midi_low: int = 36, num_bins: int = 84, preemphasis: float = 0.0):
        super().__init__(sample_rate, hop_length, win_length, n_fft, midi_low, num_bins, preemphasis)

    @property
    def dim(self) -> int:
        return self.num_bins

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.log_semitones(audio)

    def describe(self) -> dict:
        return {"kind": "cqt", **self._semitone_config()}


class ChromaFeatures(_SemitoneFeatures):
    """Chroma (12) + tonal centroid (6, optional) + onset strength (1, optional): D = 19 at the defaults.

    Semitones from C2 (MIDI 36) to B6 (1976 Hz, 60 bins) are folded: above that the
    energy is mostly overtones, which pull the chroma away from the notes played.
    """

    def __init__(self, sample_rate: int = 16_000, hop_length: int = 320, win_length: int = 4096,
                 n_fft: int = 4096, midi_low: int = 36, num_bins: int = 60, tonal_centroid: bool = True,
                 onset: bool = True, preemphasis: float = 0.0):
        super().__init__(sample_rate, hop_length, win_length, n_fft, midi_low, num_bins, preemphasis)
        self.tonal_centroid = tonal_centroid
        self.onset = onset
        fold = torch.zeros(num_bins, 12)
        fold[torch.arange(num_bins), (midi_low + torch.arange(num_bins)) % 12] = 1.0
        self.register_buffer("fold", fold, persistent=False)  # [num_bins, 12]
        self.register_buffer("tonnetz", tonal_centroid_matrix(), persistent=False)  # [12, 6]
        self.onset_bands = MelFeatures(sample_rate, hop_length, 1024, 1024, n_mels=40, preemphasis=0.0)
        self.onset_bands.window = torch.hann_window(1024, periodic=False)  # low leakage, as above

    @property
    def dim(self) -> int:
        return 12 + 6 * self.tonal_centroid + self.onset

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        log_e = self.log_semitones(audio)  # [B, T, num_bins]
        # Magnitude (not power) per pitch class, scaled per frame to a maximum of 1 (librosa's
        # norm=inf): the chroma says which notes sound, not how loud the frame is.
        chroma = log_e.mul(0.5).exp() @ self.fold  # [B, T, 12]
        chroma = chroma / chroma.amax(dim=-1, keepdim=True).clamp(min=1e-5)
        parts = [chroma]
        if self.tonal_centroid:
            parts.append((chroma / chroma.sum(dim=-1, keepdim=True).clamp(min=1e-8)) @ self.tonnetz)  # [B, T, 6]
        if self.onset:
            # Rectified rise of log-compressed band magnitudes, log(1 + 1000 |X| / max|X|) as
            # `soundlm.music.analysis.onset_envelope`: bands 60 dB under the clip's peak stay
            # near 0, so leakage flickering in quiet bands does not read as onsets.
            mag = self.onset_bands(audio).mul(0.5).exp()  # [B, T, 40]
            env = torch.log1p(1000 * mag / mag.amax(dim=(1, 2), keepdim=True).clamp(min=1e-5))
            rise = (env[:, 1:] - env[:, :-1]).clamp(min=0).mean(dim=-1, keepdim=True)  # [B, T-1, 1]
            parts.append(nn.functional.pad(rise, (0, 0, 1, 0)))
        return torch.cat(parts, dim=-1)  # [B, T, dim]

    def describe(self) -> dict:
        return {"kind": "chroma", **self._semitone_config(), "tonal_centroid": self.tonal_centroid,
                "onset": self.onset}
