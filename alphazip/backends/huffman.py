"""Adaptive Huffman coding: Vitter's Algorithm V, written out by hand.

Format of a ``huffman`` payload (frozen: archives depend on these exact bits):

* The symbol count as an unsigned LEB128 varint (minimal form), then the bitstream.
* The bitstream is written MSB-first, each byte filled from its high bit down, and zero-padded
  to a whole byte. Nothing follows the padding.
* Both sides start from a tree holding only the NYT (not-yet-transmitted) leaf. Each symbol is
  sent as the root-to-leaf path of its leaf; a symbol not seen before is sent as the path of the
  NYT leaf followed by the symbol itself in ``ceil(log2(alphabet))`` bits, MSB first (0 bits
  when the alphabet is 1; the very first symbol therefore costs only those bits). A new symbol
  is never sent twice. After each symbol the tree is updated by Algorithm V (J. S. Vitter,
  "Design and analysis of dynamic Huffman codes", JACM 34(4), 1987).

Tree layout. Nodes live in slots 0..size-1 in *decreasing* order of Vitter's implicit numbering:
slot 0 is the root and the NYT leaf is always the last slot. Slots pair up as siblings (1, 2),
(3, 4), ...; in a pair the odd slot is the right child (bit 1) and the even slot the left child
(bit 0). Each slot holds a node whose ``key`` is ``2 * weight + (1 if internal else 0)``; keys
never increase along the slots, which is Vitter's invariant (weights in order, and leaves of a
weight numbered before internal nodes of that weight). A run of slots with equal key is a
*block*; its lowest slot is the block's *leader*. When the NYT leaf splits, it becomes an
internal node whose right child (odd slot) is the new symbol's leaf and whose left child is the
new NYT.

Update after each symbol (Vitter's, with blocks rotated by swaps). "Swapping" two slots
exchanges the subtrees hanging there; the slots themselves, and their parents, stay put.

1. A new symbol splits the NYT at slot z as above; the walk starts at z and the new leaf is
   incremented last. A known symbol's leaf is incremented last, with the walk starting at its
   parent, when its block's leader is slot size-2 (the leaf is the only leaf of its weight and
   the NYT's sibling, so its parent has the same weight and must move first); otherwise the
   walk starts at the leaf itself.
2. Slide and increment the node at slot p with key k: let a be the leader of block k and b the
   leader of block k + 1, if there is one. Swap p with b (or with a when there is no block
   k + 1); if there is a block k + 1 and a != p, swap p with a as well. The node now sits at
   b (or a) with key k + 2: it passed every node whose key is below k + 2 and sits at the bottom
   of its new block. The walk goes on at the parent of the node's new slot for a leaf, and at
   the parent of slot a for an internal node (the slot that received a heavier node).
3. The walk ends after the root; then the deferred leaf, if any, is slid and incremented.

Vitter shifts a whole block down one slot where step 2 moves only its ends, in O(1) per node.
Nodes of equal key are never ancestor and descendant, so this keeps his invariant and his bound;
but nodes of equal key may end up in another order, so the bits differ from (and are not
interchangeable with) a block-shifting implementation. Sizes agree to about 0.1%.
"""

import numpy as np

from ..errors import BadArchiveError
from .base import Backend
from .serialize import count_bytes, read_count

_CHUNK_BYTES = 1 << 16  # bitstream bytes unpacked to a bit list at a time by the decoder


class _VitterTree:
    """The adaptive code tree shared, update for update, by the encoder and the decoder."""

    __slots__ = ("key", "par", "down", "leader", "slot", "size")

    def __init__(self, alphabet: int, count: int):
        nodes = 2 * min(alphabet, count) + 1
        self.key = [0] * nodes  # 2 * weight + internal, per slot
        self.par = [-1] * nodes  # parent slot; -1 for the root
        self.down = [0] * nodes  # leaf: its symbol; internal: its right child's slot
        # Leader slot of the block with each key, or -1; root keys reach 2 * count + 1.
        self.leader = [-1] * (2 * count + 4)
        self.leader[0] = 0
        self.slot = [-1] * alphabet  # leaf slot of each symbol, -1 while unseen
        self.size = 1  # only the NYT leaf, at slot 0

    def update(self, sym: int) -> None:
        """Count one more ``sym`` (adding its leaf if it is new) and restore the invariant."""
        key, par, down, leader = self.key, self.par, self.down, self.leader
        s = self.slot[sym]
        if s < 0:
            # Split the NYT: it becomes an internal node over (new leaf, new NYT).
            z = self.size - 1
            key[z], down[z] = 1, z + 1
            key[z + 1], down[z + 1], par[z + 1] = 0, sym, z
            key[z + 2], par[z + 2] = 0, z
            self.slot[sym] = z + 1
            self.size = z + 3
            leader[1], leader[0] = z, z + 1
            node, last = z, z + 1
        elif leader[key[s]] == self.size - 2:
            # The leaf is alone in its block and the NYT's sibling: its parent has the same
            # weight, so the parent must move first or the leaf would slide past it.
            node, last = par[s], s
        else:
            node, last = s, -1
        while node >= 0:
            node = self._slide_and_increment(node)
        if last >= 0:
            self._slide_and_increment(last)

    def _slide_and_increment(self, p: int) -> int:
        """Move slot ``p``'s node above all nodes with key < its key + 2, bump it; next slot."""
        key, leader = self.key, self.leader
        k = key[p]
        a = leader[k]  # top of p's own block (p itself unless p is not its leader)
        b = leader[k + 1]  # the block just above, passed entirely (-1 if there is none)
        j = b if b >= 0 else a
        if j != p:
            self._swap(p, j)
            if b >= 0 and a != p:
                self._swap(p, a)  # b's old leader moves on down into p's old block
        if b >= 0:
            leader[k + 1] = b + 1
        leader[k] = a + 1 if key[a + 1] == k else -1
        if leader[k + 2] < 0:
            leader[k + 2] = j
        key[j] = k + 2
        # The weight gain lands under the slot that received a heavier node: the mover's new
        # slot for a leaf; for an internal node (whose subtree already grew) slot a, which is
        # the slot it left unless it had to pass members of its own block.
        return self.par[a] if k & 1 else self.par[j]

    def _swap(self, x: int, y: int) -> None:
        """Exchange the nodes (subtrees) in slots ``x`` and ``y``; the slots stay in place."""
        key, down, par = self.key, self.down, self.par
        kx, ky, dx, dy = key[x], key[y], down[x], down[y]
        key[x], key[y], down[x], down[y] = ky, kx, dy, dx
        if ky & 1:
            par[dy] = par[dy + 1] = x
        else:
            self.slot[dy] = x
        if kx & 1:
            par[dx] = par[dx + 1] = y
        else:
            self.slot[dx] = y


class HuffmanBackend(Backend):
    """Adaptive Huffman coder (Vitter's Algorithm V); no side information beyond the count."""

    name = "huffman"

    def encode(self, symbols: np.ndarray, alphabet: int) -> bytes:
        """Code ``symbols`` (ints in ``range(alphabet)``) into a count varint plus bitstream."""
        array = np.asarray(symbols, dtype=np.int64).ravel()
        if array.size and (int(array.min()) < 0 or int(array.max()) >= alphabet):
            raise ValueError(f"symbols must lie in range({alphabet})")
        values = array.tolist()
        head = count_bytes(len(values))
        if not values:
            return head
        tree = _VitterTree(alphabet, len(values))
        par, slot, update = tree.par, tree.slot, tree.update
        width = (alphabet - 1).bit_length()
        out = bytearray(head)
        acc = nbits = 0
        for sym in values:
            x = slot[sym]
            new = x < 0
            if new:
                x = tree.size - 1
            # Walk leaf to root; the bit nearest the root ends up most significant.
            code = n = 0
            while x:
                code |= (x & 1) << n
                n += 1
                x = par[x]
            if new:
                code = (code << width) | sym
                n += width
            acc = (acc << n) | code
            nbits += n
            if nbits >= 256:  # keep the accumulator small; flush whole bytes
                spare = nbits & 7
                out += (acc >> spare).to_bytes(nbits >> 3, "big")
                acc &= (1 << spare) - 1
                nbits = spare
            update(sym)
        if nbits:
            pad = -nbits & 7
            out += (acc << pad).to_bytes((nbits + pad) >> 3, "big")
        return bytes(out)

    def decode(self, payload: bytes, alphabet: int, expected: int) -> np.ndarray:
        """Inverse of :meth:`encode`; BadArchiveError on truncation, junk, bad symbols, or a count
        other than ``expected``."""
        count, start = read_count(payload, "huffman")
        if count != expected:
            raise BadArchiveError(f"huffman payload holds {count} symbols, not the {expected} expected")
        stream = memoryview(payload)[start:]
        # Every symbol after the first costs at least one bit, so a bigger count is corrupt
        # (and must not make us allocate for it).
        if count > 8 * len(stream) + 1:
            raise BadArchiveError("huffman payload is truncated")
        if count == 0:
            if stream:
                raise BadArchiveError("huffman payload has trailing bytes")
            return np.zeros(0, dtype=np.uint8 if alphabet <= 256 else np.int64)
        tree = _VitterTree(alphabet, count)
        key, down, slot, update = tree.key, tree.down, tree.slot, tree.update
        width = (alphabet - 1).bit_length()
        result = [0] * count
        bits: list = []
        pos = 0  # next bit in ``bits``
        fed = 0  # stream bytes unpacked so far
        i = 0
        while i < count:
            try:
                x, p = 0, pos
                while key[x] & 1:
                    x = down[x] + 1 - bits[p]
                    p += 1
                if x == tree.size - 1:
                    if p + width > len(bits):
                        raise IndexError
                    sym = 0
                    for bit in bits[p : p + width]:
                        sym = (sym << 1) | bit
                    p += width
                    if sym >= alphabet:
                        raise BadArchiveError(f"huffman symbol {sym} is outside the alphabet")
                    if slot[sym] >= 0:
                        raise BadArchiveError(f"huffman symbol {sym} is sent as new twice")
                else:
                    sym = down[x]
            except IndexError:
                # Out of unpacked bits mid-symbol: unpack more and decode this symbol again.
                if fed >= len(stream):
                    raise BadArchiveError("huffman bitstream ends early") from None
                chunk = np.frombuffer(stream[fed : fed + _CHUNK_BYTES], dtype=np.uint8)
                bits = bits[pos:] + np.unpackbits(chunk).tolist()
                fed += len(chunk)
                pos = 0
                continue
            pos = p
            result[i] = sym
            i += 1
            update(sym)
        _check_padding(stream, fed, bits, pos)
        return np.array(result, dtype=np.uint8 if alphabet <= 256 else np.int64)


def _check_padding(stream: memoryview, fed: int, bits: list, pos: int) -> None:
    """Reject trailing junk: only the rest of the last byte may follow, and it must be zero."""
    if fed < len(stream) or len(bits) - pos > 7 or any(bits[pos:]):
        raise BadArchiveError("huffman payload has trailing junk after the last symbol")

