"""Secret keys, key files and deterministic key derivation (DESIGN §5).

A key is 32 random bytes. All key material (permutations, masks, per-block states) is drawn from
SHAKE-256 streams, each bound to a label (scheme, step, block size, image shape) and an optional
per-image nonce, so that changing any label element gives independent material and the effective key
space is the full 256-bit key. No global random state is used anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import struct
import threading
import warnings
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
from Crypto.Hash import SHAKE256

from .atomic import atomic_write
from .errors import PatchcryptError

KEY_BYTES = 32
KEY_FORMAT = "patchcrypt-key"
KEY_VERSION = 1
KEY_FILE_MAX = 64 * 1024  # key files are about 130 bytes; never read more than this
_DOMAIN = b"patchcrypt/v1"
_FP_DOMAIN = b"patchcrypt/v1/fingerprint"

LabelPart = Union[str, int, bytes]


def _encode_part(part: LabelPart) -> bytes:
    if isinstance(part, bytes):
        data = b"b" + part
    elif isinstance(part, (bool, np.bool_)):
        raise TypeError("label parts must be str, int or bytes")
    elif isinstance(part, (int, np.integer)):
        data = b"i" + str(int(part)).encode()
    elif isinstance(part, str):
        data = b"s" + part.encode("utf-8")
    else:
        raise TypeError(f"label parts must be str, int or bytes, got {type(part).__name__}")
    return struct.pack(">I", len(data)) + data


def encode_label(parts: Iterable[LabelPart]) -> bytes:
    """Length-prefixed, typed encoding of a label; injective, so distinct labels never collide."""
    parts = list(parts)
    return struct.pack(">I", len(parts)) + b"".join(_encode_part(p) for p in parts)


class LabelPrefix:
    """The hash state after domain ‖ label (no key, no nonce): a label encoded once and copied per stream.

    Per-image keys derive one stream per image and step from the same few labels; starting each from a
    copy of this state gives the same stream as :class:`KeyStream` over the label itself.
    """

    __slots__ = ("state", "encoded")

    def __init__(self, label: Iterable[LabelPart]):
        self.encoded = _DOMAIN + encode_label(label)
        self.state = hashlib.shake_256(self.encoded)


class KeyStream:
    """A deterministic stream of key material: SHAKE-256 over domain ‖ label ‖ nonce ‖ key.

    Draws are consumed in order, so a step that draws the same things in the same order from the same
    label always gets the same material.

    >>> key = Key.from_bytes(bytes(32))  # a fixed key for the example; real keys come from Key.generate()
    >>> key.stream(["demo", 4]).permutation(6).tolist()
    [2, 0, 3, 5, 1, 4]
    >>> key.stream(["demo", 4]).permutation(6).tolist()  # the same label: the same material
    [2, 0, 3, 5, 1, 4]
    >>> key.stream(["demo", 4], nonce=b"x").permutation(6).tolist()  # another nonce: independent material
    [3, 0, 4, 1, 2, 5]
    >>> key.stream(["demo"]).integers(8, 5).tolist()  # uniform in [0, 8), no modulo bias
    [0, 5, 7, 1, 0]
    """

    _CHUNK = 1 << 10  # first draw; doubled as needed (SHAKE recomputes from the start on each digest)

    def __init__(self, key_bytes: bytes, label: Union[Iterable[LabelPart], LabelPrefix], nonce: bytes = b""):
        prefix = label if isinstance(label, LabelPrefix) else LabelPrefix(label)
        h = prefix.state.copy()
        tail = struct.pack(">I", len(nonce)) + nonce + key_bytes
        h.update(tail)
        self._shake = h
        self._absorbed = (prefix.encoded, tail)  # what :meth:`tail` restarts the stream from
        self._buf = b""
        self._pos = 0  # bytes consumed from the start of the stream
        self._produced = 0
        self._until = 0  # end of the draws announced by :meth:`reserve`

    def reserve(self, n: int) -> None:
        """Announce that the next ``n`` bytes will be read, in draws of any size: they are then produced by
        one SHAKE call of exactly that length when first needed, not by doubling (which, for a stream as
        large as a 40 MP image's per-block key, computed it several times and held up to twice its size).
        The bytes are the same either way."""
        self._until = max(self._until, self._pos + int(n))

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream."""
        end = self._pos + n
        if end > self._produced:
            # SHAKE is an XOF: digest(k) is a prefix of digest(k') for k < k', so extend and slice.
            want = self._until if self._until >= end else max(end, self._produced * 2, self._CHUNK)
            self._buf, self._produced = b"", 0  # the old prefix is not needed while the longer one is made
            self._buf = self._shake.digest(want)
            self._produced = want
        out = self._buf[self._pos:end]
        self._pos = end
        return out

    def tail(self, n: int) -> "StreamReader":
        """The next ``n`` bytes as a :class:`StreamReader` that produces them in order as they are read, so
        they are never held at once; this stream moves past them without producing them."""
        reader = StreamReader(b"".join(self._absorbed), self._pos, n)
        self._pos += int(n)
        return reader

    def words(self, n: int) -> np.ndarray:
        """``n`` uniform 64-bit unsigned integers."""
        return np.frombuffer(self.read(8 * n), dtype=">u8").astype(np.uint64)

    def permutation(self, n: int) -> np.ndarray:
        """A uniformly random permutation of ``range(n)`` (argsort of 64-bit words, ties by index)."""
        return np.argsort(self.words(n), kind="stable").astype(np.int64)

    def permutations(self, count: int, n: int) -> np.ndarray:
        """``count`` independent permutations of ``range(n)``, shape (count, n)."""
        w = self.words(count * n).reshape(count, n)
        return np.argsort(w, axis=1, kind="stable").astype(np.int64)

    def integers(self, m: int, size: int) -> np.ndarray:
        """``size`` uniform integers in ``[0, m)`` by rejection sampling on 64-bit words (no modulo bias)."""
        if m <= 0:
            raise ValueError("m must be positive")
        if m == 1:
            return np.zeros(size, dtype=np.int64)
        limit = (1 << 64) - ((1 << 64) % m)  # accept words below the largest multiple of m
        out = np.empty(0, dtype=np.uint64)
        while out.size < size:
            w = self.words(max(size - out.size, 1) + 8)
            out = np.concatenate([out, w[w < np.uint64(limit)] if limit < (1 << 64) else w])
        return (out[:size] % np.uint64(m)).astype(np.int64)

    def bits(self, size: int) -> np.ndarray:
        """``size`` uniform bits as a bool array."""
        raw = np.frombuffer(self.read((size + 7) // 8), dtype=np.uint8)
        return np.unpackbits(raw)[:size].astype(bool)


class StreamBatch:
    """The key streams of one label under many nonces, read in step: ``read(n)`` gives the next ``n`` bytes of
    every stream as one (N, n) array, so what a step computes from its bytes runs once over the batch.

    Each stream is exactly :class:`KeyStream`'s (SHAKE-256 over domain ‖ label ‖ nonce ‖ key); only the hash
    calls run per nonce (in C), and the draws below mirror KeyStream's one for one, row by row.
    """

    def __init__(self, key_bytes: bytes, label: Union[Iterable[LabelPart], LabelPrefix], nonces):
        prefix = label if isinstance(label, LabelPrefix) else LabelPrefix(label)
        self._states = []
        for nonce in nonces:
            h = prefix.state.copy()
            h.update(struct.pack(">I", len(nonce)) + nonce + key_bytes)
            self._states.append(h)
        self._key, self._prefix, self._nonces = key_bytes, prefix, list(nonces)
        self._buf = np.empty((len(self._states), 0), dtype=np.uint8)
        self._pos = self._until = 0

    def __len__(self) -> int:
        return len(self._states)

    def reserve(self, n: int) -> None:
        """Announce that the next ``n`` bytes will be read (produced by one hash call per stream)."""
        self._until = max(self._until, self._pos + int(n))

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` bytes of every stream, (N, n) uint8."""
        end = self._pos + int(n)
        if end > self._buf.shape[1]:
            want = max(end, self._until)
            raw = b"".join(h.digest(want) for h in self._states)
            self._buf = np.frombuffer(raw, dtype=np.uint8).reshape(len(self._states), want)
        out = self._buf[:, self._pos:end]
        self._pos = end
        return out

    def stream(self, i: int, at: Optional[int] = None) -> KeyStream:
        """Stream ``i`` as a :class:`KeyStream` at byte ``at`` (default: the batch's position), for a row a
        batched draw cannot finish (an integer draw that rejected words)."""
        one = KeyStream(self._key, self._prefix, self._nonces[i])
        one.read(self._pos if at is None else at)
        return one

    def words(self, n: int) -> np.ndarray:
        """(N, n) uint64: every stream's :meth:`KeyStream.words`."""
        return self.read(8 * n).view(">u8").astype(np.uint64)

    def permutations(self, count: int, n: int) -> np.ndarray:
        """(N, count, n): every stream's :meth:`KeyStream.permutations` (argsort of its words, ties by index)."""
        w = self.words(count * n).reshape(len(self), count, n)
        return np.argsort(w, axis=2, kind="stable")

    def integers(self, m: int, size: int) -> np.ndarray:
        """(N, size) int64: every stream's :meth:`KeyStream.integers` (rejection sampling on 64-bit words).

        KeyStream draws ``size + 8`` words first; a row whose first ``size`` accepted words are among them is
        finished here, any other (a word over the limit, chance 1 in 2^62 or less each) by its own stream."""
        if m <= 0:
            raise ValueError("m must be positive")
        if m == 1 or size == 0:
            return np.zeros((len(self), size), dtype=np.int64)
        limit = (1 << 64) - ((1 << 64) % m)
        start = self._pos
        w = self.words(max(size, 1) + 8)
        out = (w[:, :size] % np.uint64(m)).astype(np.int64)
        if limit < (1 << 64):
            for i in np.flatnonzero((w >= np.uint64(limit)).any(axis=1)):
                out[i] = self.stream(int(i), at=start).integers(m, size)
        return out

    def bits(self, size: int) -> np.ndarray:
        """(N, size) bool: every stream's :meth:`KeyStream.bits`."""
        raw = self.read((size + 7) // 8)
        return np.unpackbits(raw, axis=1)[:, :size].astype(bool)


class StreamReader:
    """Bytes ``start .. start + size`` of a key stream, produced as they are read and then dropped.

    hashlib's SHAKE-256 only returns a prefix of its output; pycryptodome's continues it (the same bytes), so
    reading a large stream in order holds one read's worth at a time. ``read_at(offset, n)`` (offset from
    ``start``) serves reads in stream order; a read ahead of the position (a band a thread pool started
    early) keeps the skipped bytes for the reads they belong to, up to :data:`KEPT_AHEAD` (a guard: a pool
    pass keeps at most the bands of the threads that started late), unless ``keep=False``; a read
    behind the position starts the stream again (from this part's start, so reads that follow it in the part
    find their bytes kept too). ``passes`` counts the starts and
    ``produced`` the bytes made, so callers and tests can see that a pass over an image was sequential.
    Thread-safe. Pickles as the absorbed input (which holds the key, as a pickled :class:`Key` does).
    """

    KEPT_AHEAD = 256 << 20

    def __init__(self, absorbed: bytes, start: int, size: int):
        self._absorbed, self.start, self.size = absorbed, int(start), int(size)
        self._shake = None
        self._pos = 0  # next offset the SHAKE object gives, from ``start``
        self._ahead: dict = {}  # offset -> bytes produced ahead of their read
        self._lock = threading.Lock()
        self.passes = self.produced = 0

    def __reduce__(self):
        return (StreamReader, (self._absorbed, self.start, self.size))

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self._ahead.values())

    def fresh(self) -> "StreamReader":
        """Another reader over the same bytes, with a place of its own."""
        return StreamReader(self._absorbed, self.start, self.size)

    def read_at(self, offset: int, n: int, keep: bool = True) -> bytes:
        """Bytes ``offset .. offset + n`` of this part of the stream; ``keep=False`` drops the bytes it
        skips to get there (no read will ask for them)."""
        if offset < 0 or n < 0 or offset + n > self.size:
            raise ValueError(f"bytes {offset}..{offset + n} are outside a stream part of {self.size}")
        with self._lock:
            kept = self._kept(offset, n)
            if kept is not None:
                return kept
            if self._shake is None or offset < self._pos:
                self._start()
            if offset > self._pos:
                gap = offset - self._pos
                if keep and gap <= self.KEPT_AHEAD - self.nbytes:
                    begin = self._pos
                    self._ahead[begin] = self._squeeze(gap)  # reads that started late: their bytes wait
                else:
                    self._skip(gap)
            return self._squeeze(n)

    def _kept(self, offset: int, n: int):
        """Bytes offset..offset + n from those kept ahead (what is left of their chunk stays), or None."""
        for begin, chunk in self._ahead.items():
            if begin <= offset and offset + n <= begin + len(chunk):
                del self._ahead[begin]
                a = offset - begin
                if a:
                    self._ahead[begin] = chunk[:a]
                if a + n < len(chunk):
                    self._ahead[offset + n] = chunk[a + n:]
                return chunk[a:a + n]
        return None

    def _start(self) -> None:
        """Start the stream again, at this part's first byte (the reads before it may follow)."""
        self._shake = SHAKE256.new(self._absorbed)
        self._ahead.clear()
        self.passes += 1
        self._pos = -self.start
        self._skip(self.start)

    def _skip(self, n: int) -> None:
        step = 1 << 18  # skipped bytes are made and dropped a quarter megabyte at a time
        for a in range(0, n, step):
            self._squeeze(min(step, n - a))

    def _squeeze(self, n: int) -> bytes:
        out = self._shake.read(n)
        self._pos += n
        self.produced += n
        return out


class Key:
    """A 256-bit secret key. Its repr never shows the key, only the fingerprint.

    >>> key = Key.from_bytes(bytes(32))  # a fixed key for the example; real keys come from Key.generate()
    >>> key.fingerprint
    '1608607e69f0e058'
    >>> key
    Key(fingerprint=1608607e69f0e058)
    >>> Key.generate() == key, len(Key.generate().fingerprint)
    (False, 16)
    """

    __slots__ = ("_bytes",)

    def __init__(self, key_bytes: bytes):
        if not isinstance(key_bytes, (bytes, bytearray)) or len(key_bytes) != KEY_BYTES:
            raise PatchcryptError(f"a key must be exactly {KEY_BYTES} bytes")
        self._bytes = bytes(key_bytes)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def generate(cls) -> "Key":
        """A fresh key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_bytes(cls, key_bytes: bytes) -> "Key":
        return cls(key_bytes)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Key":
        """Read a key file; warns when it is readable by group or others."""
        path = Path(path)
        try:
            text, mode = _read_small_file(path)
        except FileNotFoundError:
            raise PatchcryptError(f"key file not found: {path}") from None
        except IsADirectoryError:
            raise PatchcryptError(f"key file is a directory: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PatchcryptError(f"cannot read key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(
                f"key file {path} is accessible by group/others (mode {stat.S_IMODE(mode):o}); "
                "run: chmod 600 " + str(path),
                stacklevel=2,
            )
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
                raise ValueError("not a patchcrypt key file")
            if doc.get("version") != KEY_VERSION:
                raise ValueError(f"unsupported key file version {doc.get('version')!r}")
            raw = base64.b64decode(doc["key"], validate=True)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise PatchcryptError(f"malformed key file {path}: {exc}") from None
        if len(raw) != KEY_BYTES:
            raise PatchcryptError(f"malformed key file {path}: key is {len(raw)} bytes, expected {KEY_BYTES}")
        key = cls(raw)
        fp = doc.get("fingerprint")
        if fp is not None and fp != key.fingerprint:
            raise PatchcryptError(f"malformed key file {path}: fingerprint does not match the key")
        return key

    def save(self, path: Union[str, os.PathLike], force: bool = False) -> Path:
        """Write the key file with mode 0600 (atomically; refuses to overwrite unless ``force``)."""
        path = Path(path)
        if path.exists() and not force:
            raise PatchcryptError(f"{path} already exists (use --force to overwrite)")
        if not path.parent.exists():
            raise PatchcryptError(f"directory does not exist: {path.parent}")
        doc = {
            "format": KEY_FORMAT,
            "version": KEY_VERSION,
            "key": base64.b64encode(self._bytes).decode("ascii"),
            "fingerprint": self.fingerprint,
        }
        try:
            atomic_write(path, json.dumps(doc) + "\n", mode=0o600)
        except OSError as exc:
            raise PatchcryptError(f"cannot write key file {path}: {exc.strerror or exc}") from None
        return path

    # -- use --------------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256("patchcrypt/v1/fingerprint" ‖ key); safe to show and store."""
        return hashlib.sha256(_FP_DOMAIN + self._bytes).hexdigest()[:16]

    def stream(self, label: Union[Iterable[LabelPart], LabelPrefix], nonce: bytes = b"") -> KeyStream:
        """The key stream for ``label`` (or its :class:`LabelPrefix`) and per-image ``nonce``."""
        return KeyStream(self._bytes, label, nonce)

    def streams(self, label: Union[Iterable[LabelPart], LabelPrefix], nonces) -> StreamBatch:
        """The key streams for ``label`` under each of ``nonces``, read together (:class:`StreamBatch`)."""
        return StreamBatch(self._bytes, label, nonces)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and secrets.compare_digest(self._bytes, other._bytes)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint})"

    __str__ = __repr__

    # Pickling is needed so ciphers can go to DataLoader workers; the bytes travel in process memory only.
    def __getstate__(self):
        return self._bytes

    def __setstate__(self, state):
        object.__setattr__(self, "_bytes", state)


def _read_small_file(path: Path):
    """(text, st_mode) of a regular file of at most :data:`KEY_FILE_MAX` bytes.

    Opened non-blocking so a FIFO cannot hang the open, and checked to be a regular file on the open
    descriptor (no race with a swapped path); a device such as /dev/zero is refused before any read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            raise PatchcryptError(f"key file {path} is not a regular file")
        if st.st_size > KEY_FILE_MAX:
            raise PatchcryptError(f"key file {path} is {st.st_size:,} bytes; key files are under 1 kB")
        data = os.read(fd, KEY_FILE_MAX + 1)
        if len(data) > KEY_FILE_MAX:  # grew since fstat
            raise PatchcryptError(f"key file {path} is over {KEY_FILE_MAX:,} bytes; key files are under 1 kB")
        return data.decode("utf-8"), st.st_mode
    finally:
        os.close(fd)
