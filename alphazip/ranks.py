"""The rank stage: a token becomes its rank under the model's prediction, and back.

Order: by logit, highest first; equal logits by token id, lowest first (bf16 logits tie often,
and both directions must agree). Ranks below ``top_k`` are symbols; any other token is the
escape symbol ``top_k`` followed by its id in a separate stream. Ids at or beyond the logits'
width (our raw-byte tokens) are always escaped.
"""

import torch

from .model import native

ROWS_AT_ONCE = 64  # rows compared at a time: their [64, V] comparison stays in cache (3 x faster)


def ranks_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Rank of ``tokens[b]`` in row ``b`` of ``logits`` ([B, V] -> [B]); -1 where id >= V."""
    if native.available() and logits.dtype == torch.float32 and tokens.dtype == torch.int64 and logits.ndim == 2:
        return native.ranks(logits, tokens)  # the same counts in one pass a row
    if len(logits) <= ROWS_AT_ONCE:
        return _ranks(logits, tokens)
    return torch.cat([_ranks(logits[i:i + ROWS_AT_ONCE], tokens[i:i + ROWS_AT_ONCE])
                      for i in range(0, len(logits), ROWS_AT_ONCE)])


def _ranks(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    width = logits.shape[-1]
    inside = tokens < width
    safe = torch.where(inside, tokens, torch.zeros_like(tokens))
    own = logits.gather(1, safe[:, None])
    ahead = (logits > own).sum(1)
    # Only rows where another token ties with the own logit (rare in fp32) need the count of
    # tied tokens with lower ids; the others skip that pass over the vocabulary.
    tied = torch.nonzero((logits >= own).sum(1) - ahead > 1)[:, 0]
    if len(tied):
        ids = torch.arange(width, device=logits.device)
        ahead[tied] += ((logits[tied] == own[tied]) & (ids[None, :] < safe[tied, None])).sum(1)
    return torch.where(inside, ahead, torch.full_like(ahead, -1))


def tokens_at(logits: torch.Tensor, ranks: torch.Tensor, shallow: int = 64) -> torch.Tensor:
    """Inverse of :func:`ranks_of`: the token holding rank ``ranks[b]`` in row ``b``.

    Rows whose rank is below ``shallow`` (nearly all) share one small top-k; each of the few
    deep ranks selects its own row's value (linear time), so one rank of 40,000 does not make
    every row of the step pay for a 40,000-deep top-k or a sort. The compiled kernel finds the
    same tokens by counting passes over each row.
    """
    if native.available() and logits.dtype == torch.float32 and ranks.dtype == torch.int64 and logits.ndim == 2:
        tokens = native.tokens_at(logits, ranks)
        if bool((tokens < 0).any()):
            raise ValueError(f"rank {int(ranks.max())} is beyond the {logits.shape[1]} logits")
        return tokens
    tokens = torch.empty_like(ranks)
    near = ranks < shallow
    if near.any():
        tokens[near] = _near_tokens(logits[near], ranks[near])
    for row in torch.nonzero(~near)[:, 0].tolist():
        rank = int(ranks[row])
        value = -torch.kthvalue(-logits[row], rank + 1).values  # the logit at that rank
        tokens[row] = _by_id_among_ties(logits[row:row + 1], value.view(1, 1), ranks[row:row + 1])[0]
    return tokens


def _near_tokens(logits: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    depth = int(ranks.max()) + 1
    values, indices = torch.topk(logits, depth, dim=1, sorted=True)
    threshold = values.gather(1, ranks[:, None])  # the logit value at the wanted rank
    tokens = indices.gather(1, ranks[:, None])[:, 0]
    # top-k orders equal values arbitrarily: rows where the wanted value is shared are resolved by id.
    tied_rows = torch.nonzero((logits == threshold).sum(1) > 1)[:, 0]
    if len(tied_rows):
        tokens[tied_rows] = _by_id_among_ties(logits[tied_rows], threshold[tied_rows], ranks[tied_rows])
    return tokens


def _by_id_among_ties(logits: torch.Tensor, threshold: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """The token of each row at ``ranks``, given the logit value ``threshold`` [B, 1] found there."""
    above = (logits > threshold).sum(1)  # tokens strictly ahead of every tie at that value
    tied = logits == threshold
    # The wanted token is the (rank - above)-th tied token in id order.
    position = tied.cumsum(1) - 1
    hit = tied & (position == (ranks - above)[:, None])
    return hit.to(torch.int8).argmax(1)
