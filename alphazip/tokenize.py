"""Byte-exact tokenization: any bytes -> token ids -> the very same bytes.

A tokenizer's own ``decode`` is not a faithful inverse (it normalizes, strips, and only takes
``str``), so we never use it. Instead each token id maps to the exact bytes it stands for (the
*byte table*), decoding is a join over that table, and encoding is checked against it: a text
run whose tokens do not spell its bytes exactly, and every byte that is not valid UTF-8, is
coded one byte-token per byte. Losslessness therefore does not depend on the tokenizer.
"""

import hashlib
import json
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np

from .errors import BadArchiveError

# Longest text piece handed to the tokenizer in one call; pieces end at a newline when they can.
_PIECE_CHARS = 1 << 16
_PIECES_PER_CALL = 16  # pieces per tokenizer call: enough for its threads, little memory
_INVALID_RUN = re.compile("[\udc80-\udcff]+")


def _gpt2_byte_to_unicode() -> dict[int, str]:
    """The byte -> printable-character map of byte-level BPE (GPT-2), as tokenizers builds it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def _byte_level_table(vocab: dict[str, int]) -> dict[int, bytes]:
    # Each alphabet character becomes the byte it stands for, as a latin-1 character; any other
    # character is or becomes one latin-1 lacks, so a piece encodes only if it is all alphabet
    # (one C-level pass per piece: a start-up costs 0.1 s less on a 49 k vocabulary).
    translation = {ord(char): byte for byte, char in _gpt2_byte_to_unicode().items()}
    translation |= {code: 0x100 for code in range(0x100) if code not in translation}
    table = {}
    for piece, token_id in vocab.items():
        try:
            table[token_id] = piece.translate(translation).encode("latin-1")
        except UnicodeEncodeError:
            pass  # not a byte-level piece (an added token's plain text, say)
    return table


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _sentencepiece_table(vocab: dict[str, int]) -> dict[int, bytes]:
    table = {}
    for piece, token_id in vocab.items():
        match = _BYTE_FALLBACK.fullmatch(piece)
        table[token_id] = bytes([int(match[1], 16)]) if match else piece.replace("▁", " ").encode()
    return table


class ByteTokenizer:
    """Wraps a Hugging Face tokenizer so that ``decode(encode(data)) == data`` for any bytes.

    It encodes through the ``tokenizers`` library's tokenizer (``backend``) alone, as a
    transformers fast tokenizer does for us; the transformers tokenizer it belongs to is loaded
    only when something needs it (its special tokens, saving a copy), since importing
    transformers costs a process seconds (``model/resolved.py``).
    """

    def __init__(self, backend, load_hf: Callable[[], Any]):
        self.backend = backend
        self._load_hf = load_hf
        # What a transformers call with no truncation or padding sets up before encoding.
        backend.no_truncation()
        backend.no_padding()
        spec = json.loads(backend.to_str())
        vocab = backend.get_vocab(with_added_tokens=True)
        special = {token["id"] for token in spec.get("added_tokens", []) if token.get("special")}
        if _uses_byte_level(spec):
            table = _byte_level_table(vocab)
        else:
            table = _sentencepiece_table(vocab)
        table = {i: b for i, b in table.items() if i not in special and b}
        #: Ids below this are the tokenizer's own; the 256 after it are our raw-byte tokens.
        self.vocab_size = max(vocab.values()) + 1
        #: Size of the id space we code: the tokenizer's vocabulary plus one token per byte.
        self.id_space = self.vocab_size + 256
        raw_bytes = [bytes([b]) for b in range(256)]
        self._table = [table.get(i) for i in range(self.vocab_size)] + raw_bytes
        self._byte_ids = self._single_byte_ids()
        #: What the model is fed in place of a raw-byte token, which it has no embedding for.
        self.stand_in_id = int(self._byte_ids[ord("?")])

    def _single_byte_ids(self) -> np.ndarray:
        # Byte-level vocabularies often lack bytes that never occur in UTF-8 (0xC0, 0xF5-0xFF)
        # and the tokenizer silently drops them; those bytes get our raw-byte ids instead.
        byte_ids = self.vocab_size + np.arange(256, dtype=np.int64)
        for token_id, piece in enumerate(self._table[: self.vocab_size]):
            if piece is not None and len(piece) == 1 and byte_ids[piece[0]] >= self.vocab_size:
                byte_ids[piece[0]] = token_id
        return byte_ids

    @classmethod
    def from_hf(cls, hf_tokenizer) -> "ByteTokenizer":
        """Wrap a loaded transformers fast tokenizer."""
        return cls(hf_tokenizer.backend_tokenizer, lambda: hf_tokenizer)

    @cached_property
    def hf(self):
        """The transformers tokenizer (loaded on first use)."""
        return self._load_hf()

    def model_inputs(self, ids: np.ndarray) -> np.ndarray:
        """Ids to feed the model: raw-byte tokens replaced by a fixed stand-in it can embed."""
        return np.where(ids < self.vocab_size, ids, self.stand_in_id)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the byte table: two tokenizers with equal fingerprints decode ids alike."""
        digest = hashlib.sha256()
        for token_id, piece in enumerate(self._table):
            digest.update(token_id.to_bytes(4, "little"))
            digest.update(b"\xff" if piece is None else len(piece).to_bytes(2, "little") + piece)
        return digest.hexdigest()

    def encode(self, data: bytes) -> np.ndarray:
        """Token ids (int64) whose byte-table entries concatenate to exactly ``data``."""
        text = data.decode("utf-8", "surrogateescape")
        parts, pieces = [], []
        position = 0
        for match in _INVALID_RUN.finditer(text):
            pieces += _split_pieces(text[position:match.start()])
            pieces.append(match.group())
            position = match.end()
        pieces += _split_pieces(text[position:])
        valid = [p for p in pieces if not _INVALID_RUN.fullmatch(p)]
        encoded = self._encode_pieces(valid)
        for piece in pieces:
            if _INVALID_RUN.fullmatch(piece):
                parts.append(self._byte_ids[list(piece.encode("utf-8", "surrogateescape"))])
            else:
                parts.append(self._checked(next(encoded), piece.encode("utf-8")))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _encode_pieces(self, pieces: list[str]):
        """Token ids of each piece, asking the tokenizer for ``_PIECES_PER_CALL`` at a time.

        One call over a 100 MB input would hold every token's string and offsets at once
        (gigabytes); a few pieces per call keeps memory flat.
        """
        for start in range(0, len(pieces), _PIECES_PER_CALL):
            batch = pieces[start:start + _PIECES_PER_CALL]
            # Special tokens' text is text here: "<|endoftext|>" in the input is coded as its characters.
            self.backend.encode_special_tokens = True
            yield from (encoding.ids for encoding in self.backend.encode_batch(batch, add_special_tokens=False))

    def _checked(self, ids: list[int], expected: bytes) -> np.ndarray:
        # Normalizers, unknown tokens or special-token parsing would change the bytes: fall back.
        if self.decode(ids) == expected:
            return np.asarray(ids, dtype=np.int64)
        return self._byte_ids[list(expected)]

    def decode(self, ids) -> bytes:
        """The bytes the ids stand for; an id with no bytes (a special token) is an error.

        Only called on ids we produced or on ids from a checksummed archive.
        """
        table = self._table
        try:
            return b"".join([table[i] for i in ids])
        except (TypeError, IndexError):
            raise BadArchiveError("token id has no byte representation") from None

    def token_bytes(self, token_id: int) -> bytes | None:
        """The bytes one token stands for, or None for special tokens."""
        return self._table[token_id]


def _uses_byte_level(spec: dict) -> bool:
    decoder = spec.get("decoder") or {}
    decoders = decoder.get("decoders", [decoder])
    return any(d.get("type") == "ByteLevel" for d in decoders)


def _split_pieces(text: str) -> list[str]:
    """Cut text into pieces of at most ``_PIECE_CHARS``, after a newline where there is one."""
    pieces = []
    while len(text) > _PIECE_CHARS:
        cut = text.rfind("\n", 0, _PIECE_CHARS) + 1 or _PIECE_CHARS
        pieces.append(text[:cut])
        text = text[cut:]
    if text:
        pieces.append(text)
    return pieces
