"""SASRec (Kang & McAuley 2018): causal self-attention over the history predicts the next item.

Trained as in "SASRec+" (Klenitskiy & Vasilev 2023): on whole windows of the history with a
loss at every position and a full softmax over the catalog, which is both far faster and
far better than RecBole's one-prefix-per-sample training with a binary loss.
"""

from __future__ import annotations

from torch import nn

from recstack.models.neural.transformer import TransformerRecommender, TransformerSequenceNet


class SASRec(TransformerRecommender):
    """Self-attentive sequential recommendation (Kang & McAuley 2018).

    ``heads`` attention heads in each of ``layers`` pre-LN Transformer blocks over the last
    ``max_len`` history items with a causal mask; the hidden state at the latest position,
    dotted with the (tied) item embeddings, scores the next item. See
    :class:`~recstack.models.neural.base.SequentialRecommender` for the common parameters
    and :meth:`attention` for the attention weights.

    The defaults are the best of the settings tried on the ML-100K validation split of the
    shared protocol (``benchmarks/bench_sequential.py``; BENCHMARKS.md lists them): dropout
    0.5 (as RecBole's tuned SASRec) with a patience of 20 epochs, since the validation
    curve is noisy and keeps climbing slowly.

    ``exclude_seen`` (the base class documents it) raised ML-100K's validation NDCG@10 from
    .1216 to .1273 and test from .1095 to .1124, and reached RecBole's best validation in
    215 s instead of 274 s. ``shuffle_ties`` (each epoch, events of the same second in a
    fresh order; half of ML-100K's consecutive events share one) raised validation NDCG@10
    to .1340 and test to .1173 (seed 1: .1235 -> .1302 and .1108 -> .1221). ``time_gaps``
    (below) raised the mean over seeds 0-3 to validation .1352 and test .1209, and
    averaging the scores over 4 orders of the events tied with the latest one
    (``tie_orders=4``; only the reordered tail runs again) to .1379 and .1238. Leaving the
    items a history had before a training window out of the window's softmax too (what
    ``exclude_seen`` now does) raised the mean over seeds 0-5 to validation .1404 (in the
    log's order) and test .1284 (4 orders), 1.12 times RecBole's SASRec (.1143).

    Parameters
    ----------
    time_gaps : bool
        Add to each input item the embedding of its time gap: how long after the history's
        previous event it came (the same second, up to a minute, ten minutes, an hour, a
        day, a week, longer; :data:`~recstack.models.neural.sequences.GAP_EDGES`). The
        model then sees where the current session starts: on ML-100K, 44% of the test
        events came in the same second as the history's last one. Histories given without
        times (lists of item IDs) read as events one second apart; pass their times to
        ``recommend(..., times=)``. Data without timestamps has one gap everywhere, which
        tells nothing and costs nothing. True by default (BENCHMARKS.md).
    """

    name = "sasrec"

    def __init__(
        self,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.5,
        epochs: int = 200,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 20,
        clip_norm: float = 1.0,
        patience: int = 20,
        loss: str = "ce",
        negatives: int = 256,
        exclude_seen: bool = True,
        shuffle_ties: bool = True,
        tie_orders: int = 4,
        time_gaps: bool = True,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self._common_init(locals())

    def _build_net(self, n_items: int) -> nn.Module:
        return TransformerSequenceNet(
            n_items,
            self.dim,
            self.max_len,
            self.heads,
            self.layers,
            self.dropout,
            causal=True,
            pos_std=0.02,
            time_gaps=self.time_gaps,
        )
