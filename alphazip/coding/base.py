"""The seam between the model and the bits: a token coder sees the model's logits before every
token of a frame and turns the frame's tokens into its streams, and back.

Two kinds stand behind it: ranks coded by a byte back-end (``ranked``: the rank transform, with
gzip, brotli, zstd, xz, adaptive Huffman, or any registered :class:`~alphazip.backends.Backend`)
and arithmetic coding under the model's own distribution (``arithmetic``). The schedule hands
both the same things in the same order, so the container, the bench and the CLI treat them alike.

A frame is cut into chunks; an encoder is shown each chunk's positions in order (chunks of a
group side by side, a segment of positions at a time), a decoder is asked for one position of
several chunks at once. Neither may depend on how chunks are grouped: unpacking steps them in
another batch than packing did.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from ..backends import Backend


class FrameEncoder(ABC):
    """Collects what one frame's tokens need, then writes its streams."""

    lockstep: list[range] = []  # groups of chunks whose decoding steps them together (FrameDecoder's)

    @abstractmethod
    def observe(self, rows: Sequence[int], start: int, logits: torch.Tensor, tokens: np.ndarray,
                lengths: np.ndarray) -> None:
        """Logits [R, T, V] before the tokens [R, T] at positions start..start+T-1 of the chunks
        numbered ``rows``, whose lengths are ``lengths`` [R] (later positions are padding)."""

    def features(self, rows: Sequence[int], start: int, hidden: torch.Tensor) -> None:
        """The model's state before those tokens, [R, T, hidden] (the head's input), shown just
        before :meth:`observe` by engines that give it; most coders need only the logits."""

    @abstractmethod
    def streams(self) -> list[bytes]:
        """The frame's two streams, once every position of every chunk was observed."""


class FrameDecoder(ABC):
    """Gives back one frame's tokens a position at a time."""

    lockstep: list[range] = []  # groups of chunks that must be stepped together, position by position

    @abstractmethod
    def next_tokens(self, rows: np.ndarray, position: int, logits: torch.Tensor) -> np.ndarray:
        """The token at ``position`` of each chunk in ``rows`` [R] (each is that long), given the
        model's logits [R, V] before it."""

    def features(self, rows: np.ndarray, position: int, hidden: torch.Tensor) -> None:
        """The model's state [R, hidden] before ``position`` of ``rows``, shown just before
        :meth:`next_tokens` by engines that give it (the same ones as when packing)."""

    def finish(self) -> None:
        """Called once every token was read: complain about anything left over."""


class TokenCoder(ABC):
    """Codes a frame's tokens with the model's help; ``name`` is what archives record."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def raw_backend(self) -> Backend:
        """The byte coder for frames packed without the model."""

    def raw_payload(self, piece: bytes, to_beat: int | None = None) -> bytes:
        """A raw frame's payload for ``piece``; ``to_beat``: the size of the model frame it
        competes with (None: none), which a coder may use to decide how hard to try."""
        return self.raw_backend.encode(np.frombuffer(piece, np.uint8), 256)

    def with_learning_head(self) -> "TokenCoder":
        """This coder for an engine whose model learns its own output layer as it codes: the same
        unless the coder adapts the model's logits itself (the engine's header names which)."""
        return self

    @abstractmethod
    def encoder(self, chunks: list[np.ndarray], model, top_k: int) -> FrameEncoder:
        """A fresh encoder for a frame cut into ``chunks`` (token ids)."""

    @abstractmethod
    def decoder(self, streams: list[bytes], chunk_tokens: list[int], model, top_k: int) -> FrameDecoder:
        """A decoder for a frame's ``streams`` holding chunks of ``chunk_tokens`` tokens.

        Streams are input from strangers: anything malformed raises BadArchiveError, here or
        while decoding, and no more is allocated than ``chunk_tokens`` justifies."""
