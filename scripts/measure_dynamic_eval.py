"""What learning from the text as it is coded would gain ("dynamic evaluation", Krause et al.).

An experiment, not a coder: in floating point, on transformers' fp32 forward pass of a built-in
model, over the chunks `alphazip pack` codes. Each piece of text is first scored with the
weights as they are (its ideal code length), then the weights take ``--steps`` Adam steps on
its loss, so that what comes later is coded by a model that has read what came before. The
pieces are the chunks in file order, or with ``--lockstep N`` the next N positions of every
chunk at once (what unpacking, which steps a group's chunks together, could also do).

``--params`` chooses what learns: every weight (``all``), the last block (``last``), the last
block's MLP (``lastmlp``), the output embedding (``head``, tied to the input one in SmolLM2),
the final norm's gains (``norm``), every block's o, gate, up and down through the MLPs and the
residual stream only, attention's inputs cut from the graph (``mlppath``, what the learning engine
``alphazip-exact-learn-1`` learns), or ``direct``: every block's output projections learn from
the gradient at the last residual stream, with no backward pass through the blocks (the
cheapest rule an exact version could run). Reported: the ideal code length per setting against
the unchanged model; ``--dump`` writes per-token dumps for scripts/measure_mixing.py, to see
how much of the experts' gain is left once the model learns. A coder built on this would need
the learning step in exact arithmetic on both sides; this measures whether that could pay.

    python scripts/measure_dynamic_eval.py ../shared/corpus/alice29.txt --bytes 40000 \
        --params all,direct --lrs 1e-4,3e-4 [--lockstep 256] [--model gemma3-270m] [--context 1024]
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def learnable(hf, which: str) -> list[torch.nn.Parameter]:
    """The parameters that ``which`` lets learn, sets joined by ``+``; the rest stay frozen.
    ``outhead`` is the output embedding untied from the input one, as an engine could learn it."""
    if "+" in which:
        return list({id(p): p for part in which.split("+") for p in learnable(hf, part)}.values())
    inner = hf.model
    if which == "outhead" and hf.lm_head.weight is inner.embed_tokens.weight:
        hf.lm_head.weight = torch.nn.Parameter(inner.embed_tokens.weight.detach().clone())
    chosen = {"all": list(hf.parameters()),
              "last": list(inner.layers[-1].parameters()) + [inner.norm.weight],
              # the last MLP learns from the head's and the final norm's gradients alone: no
              # attention's backward pass, the piece an exact version would find hardest
              "lastmlp": list(inner.layers[-1].mlp.parameters()) + [inner.norm.weight],
              "head": [hf.lm_head.weight],
              "norm": [inner.norm.weight],
              "outhead": [hf.lm_head.weight],
              "embed": [inner.embed_tokens.weight],  # after outhead: the input embedding alone
              # the gains of the final norm and of every norm before an MLP
              "norms": [inner.norm.weight] + [layer.post_attention_layernorm.weight for layer in inner.layers],
              # every block's o, gate, up and down, learning through the MLPs and the residual
              # stream only: attention's inputs are cut from the graph (see MlpPath)
              "mlppath": [linear.weight for layer in inner.layers
                          for linear in (layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj,
                                         layer.mlp.down_proj)],
              # every block's linear layers, attention's q, k and v too, through attention's softmax
              # (within the positions of a step: the past's keys and values are data)
              "blocks": [linear.weight for layer in inner.layers
                         for linear in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                                        layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj,
                                        layer.mlp.down_proj)]}[which]
    return list({id(p): p for p in chosen}.values())  # tied weights appear once


class Autograd:
    """Learning by true gradients: Adam on ``params`` after backpropagation through the model."""

    def __init__(self, hf, params, lr: float):
        learning = {id(p) for p in params}
        for p in hf.parameters():
            p.requires_grad_(id(p) in learning)
        self.optimizer = torch.optim.Adam(params, lr=lr)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()

    def close(self) -> None:
        pass


class MlpPath(Autograd):
    """True gradients with attention's inputs cut from the graph: the gradient reaches each block
    by the residual stream and the MLPs, never through an attention's softmax, so an exact
    version needs the backward pass of norms, gates and linear layers alone."""

    def __init__(self, hf, params, lr: float):
        super().__init__(hf, params, lr)
        self.hooks = [layer.input_layernorm.register_forward_hook(lambda module, args, out: out.detach())
                      for layer in hf.model.layers]

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


class Direct:
    """Learning without backpropagating through the blocks: the gradient at the last residual
    stream (through the final norm and the head only) stands for the gradient at every block's
    output, so each block's output projections (attention's o, the MLP's down) learn from the
    outer product of that gradient with their own input. The piece an exact version would need
    is then the head's backward pass and integer outer products: no attention backward."""

    def __init__(self, hf, lr: float):
        for p in hf.parameters():
            p.requires_grad_(False)
        self.linears = [linear for layer in hf.model.layers for linear in (layer.self_attn.o_proj, layer.mlp.down_proj)]
        self.optimizer = torch.optim.Adam([linear.weight for linear in self.linears], lr=lr)
        self.inputs: dict[int, torch.Tensor] = {}
        self.hooks = [linear.register_forward_pre_hook(self._keep_input) for linear in self.linears]
        self.hooks.append(hf.model.norm.register_forward_pre_hook(self._cut))

    def _keep_input(self, linear, args):
        self.inputs[id(linear)] = args[0].detach()

    def _cut(self, norm, args):
        self.residual = args[0].detach().requires_grad_(True)  # the blocks stay out of the graph
        return (self.residual,)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()
        gradient = self.residual.grad[0]  # [L, hidden]
        for linear in self.linears:
            outer = gradient.T @ self.inputs[id(linear)][0]
            linear.weight.grad = outer if linear.weight.grad is None else linear.weight.grad + outer

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


def adapted_bits(hf, chunks, bos: int, vocab: int, which: str, lr: float, steps: int, every: int,
                 record=None) -> float:
    """Ideal code length in bits of ``chunks``, learning as they are coded: after each chunk in
    file order (``every`` 0), or in lockstep, as unpacking steps them, after each ``every``
    positions of all chunks at once; then each chunk keeps its keys and values from the weights
    they were computed with, as an engine stepping them would. ``record``, if given, takes each
    token's log2 p and the 8 most likely ids, as scripts/dump_tokens.py writes them."""
    from transformers import DynamicCache

    original = {name: tensor.clone() for name, tensor in hf.state_dict().items()}
    learner = None
    if lr:
        if which == "direct":
            learner = Direct(hf, lr)
        else:
            learner = (MlpPath if "mlppath" in which.split("+") else Autograd)(hf, learnable(hf, which), lr)
    pieces = []  # (chunk, offset, inputs [1, L], targets [L], scored [L], cache) per chunk
    for index, chunk in enumerate(chunks):
        targets = torch.from_numpy(chunk.astype(np.int64))
        inputs = torch.from_numpy(np.concatenate([[bos], chunk[:-1]]).clip(max=vocab - 1))[None]
        # our raw-byte ids are escaped: the same cost either way
        pieces.append((index, 0, inputs, targets, targets < vocab, DynamicCache() if every else None))
    try:
        if not every:
            return sum(code_and_learn(hf, [piece], learner, steps, record) for piece in pieces)
        bits = 0.0
        for start in range(0, max(len(chunk) for chunk in chunks), every):
            window = slice(start, start + every)
            bits += code_and_learn(hf, [(index, start, inputs[:, window], targets[window], scored[window], cache)
                                        for index, _, inputs, targets, scored, cache in pieces
                                        if len(targets) > start], learner, steps, record)
        return bits
    finally:
        if learner:
            learner.close()
        hf.load_state_dict(original)


def code_and_learn(hf, pieces, learner, steps: int, record=None) -> float:
    """Bits of the scored positions of ``pieces`` (as :func:`adapted_bits` makes them) under the
    weights as they are; then ``steps`` learning steps on their mean loss."""
    count = sum(int(scored.sum()) for *_, scored, _ in pieces)
    bits = 0.0
    for step in range(steps if learner else 1):
        for chunk, offset, inputs, targets, scored, cache in pieces:
            if cache is not None and cache.get_seq_length() > offset:  # a further step on the same piece
                cache.crop(offset - cache.get_seq_length())
            with torch.set_grad_enabled(learner is not None):
                logits = hf(inputs, past_key_values=cache, use_cache=cache is not None).logits[0].float()
                nll = torch.nn.functional.cross_entropy(logits[scored], targets[scored], reduction="sum")
            if cache is not None:  # the past is data: no gradient flows into earlier positions
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys.detach(), layer.values.detach()
            if step == 0:
                bits += float(nll.detach()) / math.log(2)
                if record is not None:
                    logp = torch.log_softmax(logits.detach()[scored], -1)
                    where = offset + scored.nonzero()[:, 0].numpy()
                    record["log2p"][chunk][where] = logp.gather(1, targets[scored, None])[:, 0].numpy() / math.log(2)
                    record["top8"][chunk][where] = logp.topk(8, dim=1).indices.numpy()
            if learner:
                learner.backward(nll / count)
        if learner:
            learner.step()
    return bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--bytes", type=int, default=40000, help="the first N bytes of each file")
    parser.add_argument("--params", default="all,direct", help="all, last, lastmlp, head, norm, mlppath, direct")
    parser.add_argument("--lrs", default="1e-4,3e-4", help="Adam learning rates")
    parser.add_argument("--steps", type=int, default=1, help="learning steps on each piece")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--lockstep", type=int, default=0, metavar="N",
                        help="learn after every N positions of all chunks at once, as unpacking steps them")
    parser.add_argument("--dump", type=Path, help="write each setting's per-token dump, as scripts/dump_tokens.py "
                        "does, to DUMP-FILE-SETTING.npz for scripts/measure_mixing.py")
    parser.add_argument("--model", default="smollm2-135m", help="a built-in model")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip.bench import cpu_model
    from alphazip.lookup import MODELS
    from alphazip.schedule import split_chunks
    from dump_tokens import save_dump  # the format scripts/measure_mixing.py reads

    model = MODELS.get(args.model, "float32")
    hf = model.hf.eval()
    vocab = hf.config.vocab_size
    settings = [("none", 0.0)] + [(which, float(lr)) for which in args.params.split(",")
                                  for lr in args.lrs.split(",")]
    print(f"cpu: {cpu_model()}; {args.model}; context {args.context}; {args.steps} Adam step(s) after "
          f"{f'each {args.lockstep} positions of all chunks' if args.lockstep else 'each chunk'}; "
          f"transformers fp32, {torch.get_num_threads()} threads")
    for path in args.files:
        data = path.read_bytes()[:args.bytes]
        chunks = split_chunks(model.tokenizer.encode(data), args.context)
        print(f"{path.name}, first {len(data):,} bytes, {sum(map(len, chunks)):,} tokens, {len(chunks)} chunks")
        baseline = None
        for which, lr in settings:
            started = time.perf_counter()
            record = {"log2p": [np.full(len(chunk), -99.0) for chunk in chunks],
                      "top8": [np.zeros((len(chunk), 8), np.int64) for chunk in chunks]} if args.dump else None
            bits = adapted_bits(hf, chunks, model.bos_id, vocab, which, lr, args.steps, args.lockstep, record)
            if record:
                out = args.dump.with_name(f"{args.dump.name}-{path.name}-{which}-{lr:g}.npz")
                save_dump(out, chunks, record["log2p"], record["top8"])
            baseline = baseline or bits
            print(f"  {which:>5} lr {lr:g}: ideal {bits / 8:,.0f} B, {bits / len(data):.4f} bits/byte, "
                  f"{100 * (bits / baseline - 1):+.2f} %, {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
