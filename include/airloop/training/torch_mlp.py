"""A PyTorch MLP for tabular data, shaped as a scikit-learn estimator.

It sits at the end of the same kind of Pipeline as every other family, after the
preprocessing that encodes categoricals as integer codes (-1 for unseen or missing) and
scales numerics, so the logged model applies the training transforms when it serves.
The first `n_categorical` input columns are those codes; each gets an embedding.

On a GPU it trains in mixed precision (bfloat16 where supported, else float16 with loss
scaling). With a validation set it stops early and keeps the best epoch's weights.
Pickling and skops keep the weights as NumPy arrays, so a model trained on a GPU loads and
predicts on a CPU-only server.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from torch import nn

_PREDICT_BATCH = 65_536
_MIN_STEPS_PER_EPOCH = 32


class _Network(nn.Module):
    def __init__(
        self,
        cardinalities: list[int],
        n_numeric: int,
        embedding_dim: int,
        hidden: int,
        layers: int,
        dropout: float,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        dims = [min(embedding_dim, (card + 1) // 2) for card in cardinalities]
        tables = (nn.Embedding(card, dim) for card, dim in zip(cardinalities, dims, strict=True))
        self.embeddings = nn.ModuleList(tables)
        blocks: list[nn.Module] = []
        width = sum(dims) + n_numeric
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, outputs))
        self.mlp = nn.Sequential(*blocks)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        embedded = [table(codes[:, i]) for i, table in enumerate(self.embeddings)]
        out = self.mlp(torch.cat([*embedded, numeric], dim=1))
        # One logit (binary) or value (regression) per row; k logits per row for k classes.
        return out.squeeze(1) if out.shape[1] == 1 else out


class _TabularMLP(BaseEstimator):
    _classify = False

    def __init__(
        self,
        n_categorical: int = 0,
        hidden_units: int = 128,
        layers: int = 2,
        embedding_dim: int = 8,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 1024,
        max_epochs: int = 20,
        patience: int = 3,
        random_state: int = 42,
        device: str = "cpu",
    ) -> None:
        self.n_categorical = n_categorical
        self.hidden_units = hidden_units
        self.layers = layers
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.random_state = random_state
        self.device = device

    # -- fitting -----------------------------------------------------------------------

    def fit(self, X: Any, y: Any, eval_set: tuple[Any, Any] | None = None) -> _TabularMLP:
        """Train; with eval_set, stop after `patience` epochs without a better validation loss."""
        torch.manual_seed(self.random_state)
        device = torch.device(self.device)
        X = np.asarray(X, dtype=np.float32)
        self.n_features_in_ = X.shape[1]
        codes = X[:, : self.n_categorical].astype(np.int64)
        self.cardinalities_ = [int(codes[:, i].max(initial=-1)) + 2 for i in range(self.n_categorical)]
        target = self._prepare_target(np.asarray(y, dtype=np.float32))
        self.module_ = self._build().to(device)
        train = self._tensors(X, target, device)
        valid = None
        if eval_set is not None:
            valid_X = np.asarray(eval_set[0], dtype=np.float32)
            valid = self._tensors(
                valid_X, self._scale_target(np.asarray(eval_set[1], dtype=np.float32)), device
            )
        self.history_ = self._train(train, valid, device)
        return self

    def _build(self) -> _Network:
        return _Network(
            self.cardinalities_,
            self.n_features_in_ - self.n_categorical,
            self.embedding_dim,
            self.hidden_units,
            self.layers,
            self.dropout,
            self._outputs(),
        )

    def _outputs(self) -> int:
        return 1

    def _prepare_target(self, y: np.ndarray) -> np.ndarray:
        self.target_mean_, self.target_scale_ = (
            (0.0, 1.0) if self._classify else (float(y.mean()), float(y.std() or 1.0))
        )
        return self._scale_target(y)

    def _scale_target(self, y: np.ndarray) -> np.ndarray:
        return (y - self.target_mean_) / self.target_scale_

    def _tensors(self, X: np.ndarray, y: np.ndarray | None, device: torch.device) -> tuple[torch.Tensor, ...]:
        codes = X[:, : self.n_categorical].astype(np.int64) + 1  # 0 is the unseen/missing row
        limits = np.asarray(self.cardinalities_, dtype=np.int64) - 1
        codes = np.where((codes < 0) | (codes > limits), 0, codes)
        numeric = np.nan_to_num(X[:, self.n_categorical :], nan=0.0)  # scaled: 0 is the mean
        tensors = [torch.from_numpy(codes).to(device), torch.from_numpy(numeric).to(device)]
        if y is not None:
            # Class indices for a softmax over k classes, else one float target per row.
            dtype = np.int64 if self._outputs() > 1 else np.float32
            tensors.append(torch.from_numpy(y.astype(dtype)).to(device))
        return tuple(tensors)

    def _loss(self) -> nn.Module:
        if self._outputs() > 1:
            return nn.CrossEntropyLoss()
        return nn.BCEWithLogitsLoss() if self._classify else nn.MSELoss()

    def _train(
        self, train: tuple[torch.Tensor, ...], valid: tuple[torch.Tensor, ...] | None, device: torch.device
    ) -> dict[str, list[float]]:
        module, loss_fn = self.module_, self._loss()
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        on_gpu = device.type == "cuda"
        # Native bf16 only (Ampere and later); emulated bf16 is slower than fp16 with scaling.
        native_bf16 = on_gpu and torch.cuda.is_bf16_supported(including_emulation=False)
        amp_dtype = torch.bfloat16 if native_bf16 else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=on_gpu and amp_dtype == torch.float16)
        generator = torch.Generator(device="cpu").manual_seed(self.random_state)
        history: dict[str, list[float]] = {"train_loss": [], "validation_loss": []}
        best, best_state, stale = float("inf"), None, 0
        rows = train[0].shape[0]
        # A small table would make a handful of steps an epoch, too few to learn anything:
        # smaller batches give it at least _MIN_STEPS_PER_EPOCH.
        batch_size = min(self.batch_size, max(16, math.ceil(rows / _MIN_STEPS_PER_EPOCH)))
        for _epoch in range(self.max_epochs):
            module.train()
            order = torch.randperm(rows, generator=generator).to(device)
            # Summed on the device: reading the loss every batch would sync the GPU each step.
            total = torch.zeros((), device=device)
            for start in range(0, rows, batch_size):
                batch = order[start : start + batch_size]
                with torch.autocast(device.type, dtype=amp_dtype, enabled=on_gpu):
                    loss = loss_fn(module(train[0][batch], train[1][batch]).float(), train[2][batch])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.detach() * len(batch)
            history["train_loss"].append(float(total) / rows)
            if valid is None:
                continue
            current = self._validation_loss(valid, loss_fn, device, amp_dtype)
            history["validation_loss"].append(current)
            if math.isfinite(current) and current < best - 1e-6:
                best, best_state, stale = current, copy.deepcopy(module.state_dict()), 0
                self.best_epoch_ = len(history["validation_loss"])
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        else:  # no validation set, or no finite validation loss: the last epoch's weights
            self.best_epoch_ = len(history["train_loss"])
        return history

    @torch.no_grad()
    def _validation_loss(
        self,
        valid: tuple[torch.Tensor, ...],
        loss_fn: nn.Module,
        device: torch.device,
        amp_dtype: torch.dtype,
    ) -> float:
        self.module_.eval()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=device.type == "cuda"):
            return float(loss_fn(self.module_(valid[0], valid[1]).float(), valid[2]))

    # -- predicting --------------------------------------------------------------------

    @torch.no_grad()
    def _raw(self, X: Any) -> np.ndarray:
        device = torch.device(self.device if self.device == "cpu" or torch.cuda.is_available() else "cpu")
        self.module_.to(device).eval()
        X = np.asarray(X, dtype=np.float32)
        out = []
        for start in range(0, len(X), _PREDICT_BATCH):
            codes, numeric = self._tensors(X[start : start + _PREDICT_BATCH], None, device)
            out.append(self.module_(codes, numeric).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0, dtype=np.float32)

    # -- serialization: weights as NumPy arrays, so skops can store them -------------------

    def __getstate__(self) -> dict[str, Any]:
        state = {key: value for key, value in super().__getstate__().items() if key != "module_"}
        if hasattr(self, "module_"):
            state["weights_"] = {k: v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        weights = state.pop("weights_", None)
        super().__setstate__(state)
        if weights is not None:
            self.module_ = self._build()
            self.module_.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
            self.module_.eval()


class TabularMLPClassifier(ClassifierMixin, _TabularMLP):
    """Classifier over labels 0..k-1: one logit for two classes, a softmax over k above two.

    predict_proba has a column per class (P(label == 1) in the second for two).
    """

    _classify = True

    def fit(self, X: Any, y: Any, eval_set: tuple[Any, Any] | None = None) -> TabularMLPClassifier:
        self.classes_ = np.arange(max(2, int(np.max(y)) + 1))
        super().fit(X, y, eval_set)
        return self

    def _outputs(self) -> int:
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:
        raw = self._raw(X).astype(np.float64)
        if raw.ndim == 2:
            shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        positive = 1.0 / (1.0 + np.exp(-raw))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)


class TabularMLPRegressor(RegressorMixin, _TabularMLP):
    """Regressor: trains on the standardised target, predicts in the target's own units."""

    def predict(self, X: Any) -> np.ndarray:
        return self._raw(X).astype(np.float64) * self.target_scale_ + self.target_mean_
