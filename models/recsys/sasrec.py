"""SASRec (Kang & McAuley 2018): a causal transformer over each user's items in time order.

The next item is predicted from every prefix during training (full softmax over the catalogue,
which beats sampled-negative BCE at this catalogue size); at serving time the hidden state after
the user's last item scores every item. Sequences are ordered by last_ts (ties by media_id) and
kept from fit, so the model serves through the same Recommender interface as the others.

torch is imported only inside functions: the network class is built on first use, and a pickled
model carries the network's state dict, not the class.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Self

import numpy as np
import polars as pl
from scipy import sparse

from models.recsys.base import Recommender


def last_items(order: sparse.csr_matrix, max_len: int) -> np.ndarray:
    """(rows x max_len) int64 item ids + 1, right-aligned, 0-padded: each row's last max_len items.

    A row's items are ordered by their stored value, ascending (ties by item index), so the last
    column holds the most recent one.
    """
    cells = order.tocoo()
    by_row = np.lexsort((cells.col, cells.data, cells.row))
    rows, cols = cells.row[by_row], cells.col[by_row]
    ends = np.cumsum(np.bincount(rows, minlength=order.shape[0]))
    from_end = ends[rows] - np.arange(len(rows)) - 1
    keep = from_end < max_len
    out = np.zeros((order.shape[0], max_len), dtype=np.int64)
    out[rows[keep], max_len - 1 - from_end[keep]] = cols[keep] + 1
    return out


def training_windows(order: sparse.csr_matrix, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each (windows x max_len), item ids + 1 and 0 for padding.

    Every consecutive pair (item t -> item t+1) of a user's sequence is predicted exactly once:
    pairs are cut into windows of max_len from the end, right-aligned, so a long history becomes
    several windows rather than losing all but its tail.
    """
    cells = order.tocoo()
    by_row = np.lexsort((cells.col, cells.data, cells.row))
    rows, cols = cells.row[by_row], cells.col[by_row] + 1
    pair = rows[:-1] == rows[1:]
    users, inputs, targets = rows[:-1][pair], cols[:-1][pair], cols[1:][pair]
    per_user = np.bincount(users, minlength=order.shape[0])
    ends = np.cumsum(per_user)
    from_end = ends[users] - np.arange(len(users)) - 1
    offsets = np.concatenate([[0], np.cumsum(-(-per_user // max_len))])
    window = offsets[users] + from_end // max_len
    slot = max_len - 1 - from_end % max_len
    shape = (int(offsets[-1]), max_len)
    window_inputs, window_targets = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    window_inputs[window, slot] = inputs
    window_targets[window, slot] = targets
    return window_inputs, window_targets


@cache
def _network_class() -> type:
    """The torch module, defined on first use so that importing this module does not import torch."""
    import torch

    class SASRecNetwork(torch.nn.Module):
        """Item + position embeddings, pre-LN causal transformer; output tied to the item embeddings."""

        def __init__(self, n_items: int, hidden: int, layers: int, heads: int, max_len: int, dropout: float):
            super().__init__()
            self.heads = heads
            self.items = torch.nn.Embedding(n_items + 1, hidden, padding_idx=0)
            self.positions = torch.nn.Embedding(max_len, hidden)
            self.dropout = torch.nn.Dropout(dropout)
            layer = torch.nn.TransformerEncoderLayer(
                hidden, heads, hidden, dropout, batch_first=True, norm_first=True
            )
            self.encoder = torch.nn.TransformerEncoder(
                layer, layers, norm=torch.nn.LayerNorm(hidden), enable_nested_tensor=False
            )

        def hidden_states(self, sequences: torch.Tensor) -> torch.Tensor:
            """(batch x len) item ids + 1 -> (batch x len x hidden)."""
            length = sequences.shape[1]
            real = sequences > 0
            x = self.items(sequences) * self.items.embedding_dim**0.5 + self.positions.weight[:length]
            x = self.dropout(x) * real.unsqueeze(-1)
            causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
            # Attend to earlier real items; a padding position attends to itself only (never to nothing).
            allowed = causal & (real.unsqueeze(1) | torch.eye(length, dtype=torch.bool))
            blocked = (~allowed).repeat_interleave(self.heads, dim=0)
            return self.encoder(x, mask=blocked)

        def forward(self, sequences: torch.Tensor) -> torch.Tensor:
            """(batch x len) sequences -> (batch x n_items) scores of the item after the last."""
            return self.hidden_states(sequences)[:, -1] @ self.items.weight[1:].T

    return SASRecNetwork


class SASRec(Recommender):
    """Next-item scores from the user's last max_len items. Defaults are the values tuned on ML-100K."""

    name = "sasrec"

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 1,
        max_len: int = 50,
        dropout: float = 0.2,
        epochs: int = 100,
        lr: float = 2e-3,
        batch_size: int = 128,
        seed: int = 42,
    ) -> None:
        if min(hidden, layers, heads, max_len, epochs, batch_size) < 1 or hidden % heads:
            raise ValueError("need positive sizes and hidden divisible by heads")
        if not 0.0 <= dropout < 1.0 or lr <= 0:
            raise ValueError(f"need 0 <= dropout < 1 and lr > 0, got {dropout}, {lr}")
        self.hidden = hidden
        self.layers = layers
        self.heads = heads
        self.max_len = max_len
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def _new_network(self):  # -> SASRecNetwork
        return _network_class()(
            len(self._items), self.hidden, self.layers, self.heads, self.max_len, self.dropout
        )

    def fit(self, train: pl.DataFrame) -> Self:
        import torch

        super().fit(train)
        index = pl.DataFrame({"media_id": self._items}).with_row_index("i")
        coded = (
            train.join(self._users, on="user_id")
            .join(index, on="media_id")
            .sort("u", "last_ts", "media_id")
            .with_columns(step=pl.int_range(1, pl.len() + 1).over("u"))
        )
        # The time order of each user's items, kept for serving: value = step in the sequence.
        self._order = sparse.csr_matrix(
            (coded["step"].to_numpy().astype(np.float64), (coded["u"].to_numpy(), coded["i"].to_numpy())),
            shape=self._seen.shape,
        )
        inputs, targets = training_windows(self._order, self.max_len)
        if not len(inputs):
            raise ValueError("SASRec learns from consecutive items: no user has two interactions")
        rng = np.random.default_rng(self.seed)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            network = self._new_network()
            optimizer = torch.optim.Adam(network.parameters(), lr=self.lr)
            network.train()
            for _ in range(self.epochs):
                for batch in np.array_split(rng.permutation(len(inputs)), -(-len(inputs) // self.batch_size)):
                    wanted = torch.from_numpy(targets[batch])
                    real = wanted > 0  # softmax only where there is a next item: padding costs nothing
                    hidden = network.hidden_states(torch.from_numpy(inputs[batch]))[real]
                    logits = hidden @ network.items.weight[1:].T
                    loss = torch.nn.functional.cross_entropy(logits, wanted[real] - 1)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        self._network = network.eval()
        return self

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self._score(self._order[users])

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        """Rows whose values order their items (ascending; the largest is the most recent)."""
        import torch

        with torch.no_grad():
            return self._network(torch.from_numpy(last_items(seen, self.max_len))).numpy()

    def onnx_inputs(self, users: np.ndarray) -> np.ndarray:
        """What the exported graph takes: (users x max_len) int64 item ids + 1, right-aligned."""
        return last_items(self._order[users], self.max_len)

    def torch_scorer(self):  # -> torch.nn.Module
        """sequences (batch x max_len) -> scores (batch x items), for ONNX export."""
        return self._network

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if "_network" in state:
            state["_network"] = state["_network"].state_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("_network", None)
        self.__dict__.update(state)
        if weights is not None:
            network = self._new_network()
            network.load_state_dict(weights)
            self._network = network.eval()
