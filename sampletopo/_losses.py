"""Per-sample losses: the named ones and a function of your own, one definition for every recorder.

A loss is given as ``"cross_entropy"`` (the default), ``"mse"``, or a function
``fn(outputs, targets) -> losses`` with ``reduction="none"`` semantics: one loss per sample, a
tensor of shape ``(batch,)``. :func:`resolve_loss` checks what was given and returns a
:class:`Loss`, whose :meth:`Loss.per_sample` is what the recorder, the checkpoint recorder, the
Lightning callback and ``sampletopo train`` evaluate. What each computes (in float64, from the
detached outputs):

``cross_entropy``
    ``-log softmax(outputs)[label]``; class labels only. Predictions: the arg-max class.
``mse``
    The squared error averaged over the output dimensions: ``mean_j (out_j - y_j) ** 2`` per
    sample, in float64 (the recorders compare with the dataset's float64 targets). With regression targets (float ``y`` of shape ``(n,)`` or ``(n, d)``) the outputs
    must hold as many values per sample as the targets (``(n, 1)`` fits ``(n,)``); with class
    labels, ``y`` is one-hot over the model's ``C`` output columns (``mean_c (out_c - 1[c =
    y]) ** 2``) and the predictions are the arg-max class.
a function
    Called as ``fn(outputs, targets)`` on the model's detached outputs and the batch's targets
    (class labels as int64, regression targets as float64); its result, cast to float64, is the
    per-sample loss. With class labels, the predictions are the arg-max class.

With regression targets there are no classes: predictions, labels and the ``correct`` column
of the loss tables are null, and accuracies with them.

A function is stored by its import path (``"pkg.module:function"``) in the run's config when it
can be imported again (defined at the top level of a module other than ``__main__``); see
:func:`import_path`. :func:`loss_from_config` rebuilds it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sampletopo._validation import invalid

__all__ = ["LOSSES", "Loss", "import_path", "loss_from_config", "resolve_loss"]

LOSSES = ("cross_entropy", "mse")
"""The losses named by a string."""


def import_path(fn: Any) -> str | None:
    """``"module:qualname"`` of a function that can be imported again, else ``None`` (one
    defined in ``__main__``, inside another function, or a lambda)."""
    module = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", None)
    if not module or not qual or module == "__main__" or "<" in qual:
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qual}" if obj is fn else None


@dataclass(frozen=True)
class Loss:
    """A per-sample loss (see the module docstring).

    Attributes
    ----------
    name : str
        ``"cross_entropy"``, ``"mse"``, or a function's ``"module:qualname"`` (kept in the run's
        manifest to tell losses apart).
    fn : callable or None
        The function of your own, ``None`` for a named loss.
    rebuildable : bool
        Whether :func:`loss_from_config` can rebuild it from ``name``.
    """

    name: str
    fn: Callable[..., Any] | None = None
    rebuildable: bool = True

    def check_targets(self, *, regression: bool, where: str) -> None:
        """Refuse cross-entropy for regression targets."""
        if regression and self.name == "cross_entropy":
            raise invalid(
                "loss",
                "'mse' or a loss function of your own for regression targets (float y)",
                "cross_entropy",
                where=where,
                fix="Pass loss='mse' (--loss mse), or integer class labels for cross-entropy.",
            )

    def per_sample(
        self, outputs: Any, targets: torch.Tensor, *, classes: int, where: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample losses (float64, ``(n,)``) and predictions (int64 ``(n,)``; ``None`` for
        regression, ``classes == 0``) of one batch; outputs that do not fit are one error."""
        n = int(targets.shape[0])
        if classes > 0:
            check_logits(outputs, n, classes, what=where)
            out = outputs.detach()
            if self.fn is not None:
                loss = self._call(out, targets, n, where)
            elif self.name == "mse":
                loss = ((out.double() - _one_hot(targets, out.shape[1], torch.float64)) ** 2).mean(
                    dim=1
                )
            else:
                # float64 keeps tiny losses of confident predictions distinct, not rounded to 0.
                loss = F.cross_entropy(out.double(), targets, reduction="none")
            return loss, out.argmax(dim=1)
        if not isinstance(outputs, torch.Tensor) or outputs.ndim < 1 or outputs.shape[0] != n:
            raise invalid(
                "model",
                f"a model whose output for a batch of {n} samples is a tensor with {n} rows",
                where=where,
                got=_shape_text(outputs),
            )
        out = outputs.detach()
        if self.fn is not None:
            return self._call(out, targets, n, where), None
        per = targets[0].numel() if n else 1
        if n and out[0].numel() != per:
            raise invalid(
                "model",
                f"a model with {per} output value(s) per sample, as the targets have "
                f"(loss 'mse' compares them one by one; targets {tuple(targets.shape)})",
                where=where,
                got=f"outputs of shape {tuple(out.shape)}",
                fix="Make the model's last layer output as many values as each target holds.",
            )
        diff = out.reshape(n, -1).double() - targets.reshape(n, -1).double()
        return (diff**2).mean(dim=1), None

    def training_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The batch's mean loss with gradients, for training (``sampletopo train``): the mean
        over the batch of what :meth:`per_sample` records, in the outputs' precision."""
        if self.fn is not None:
            return self.fn(outputs, targets).mean()  # type: ignore[no-any-return]
        if self.name == "cross_entropy":
            return F.cross_entropy(outputs, targets)
        n = outputs.shape[0]
        if targets.is_floating_point():
            return ((outputs.reshape(n, -1) - targets.reshape(n, -1)) ** 2).mean()
        return ((outputs - _one_hot(targets, outputs.shape[1], outputs.dtype)) ** 2).mean()

    def batch_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``fn(outputs, targets) -> mean loss`` with gradients, as the landscape and Hessian
        code take it: ``torch.nn.functional.cross_entropy`` itself, :func:`mse_mean`, or the
        mean of a function of your own (named after it, so resume files tell losses apart)."""
        if self.name == "cross_entropy":
            return F.cross_entropy
        if self.fn is None:
            return mse_mean
        fn = self.fn

        def mean(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return fn(outputs, targets).mean()  # type: ignore[no-any-return]

        mean.__module__ = getattr(fn, "__module__", __name__)
        mean.__qualname__ = f"{getattr(fn, '__qualname__', 'loss')}.mean"
        return mean

    def _call(self, out: torch.Tensor, targets: torch.Tensor, n: int, where: str) -> torch.Tensor:
        assert self.fn is not None
        res = self.fn(out, targets)
        if not isinstance(res, torch.Tensor) or res.numel() != n or (res.ndim > 1 and n > 1):
            raise invalid(
                "loss",
                f"a function returning one loss per sample (reduction='none'): a tensor of "
                f"shape ({n},) for a batch of {n}",
                where=where,
                got=f"{self.name} returned {_shape_text(res)}",
                fix="Compute it with reduction='none' (and average over output dimensions "
                "yourself), e.g. F.mse_loss(out, y, reduction='none').mean(dim=1).",
            )
        return res.detach().reshape(n).double()


def _one_hot(targets: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    # A comparison rather than F.one_hot, so that torch.func.vmap (landscape grids) can batch it.
    return (targets.long()[:, None] == torch.arange(classes, device=targets.device)).to(dtype)


def mse_mean(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The batch's mean of the ``"mse"`` loss (see the module docstring), with gradients."""
    return Loss("mse").training_loss(outputs, targets)


def _shape_text(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} ({value.dtype})"
    return f"{type(value).__name__}, not a tensor"


def check_logits(logits: Any, n: int, classes: int, *, what: str) -> None:
    """Refuse model outputs that are not ``(n, C)`` float logits with ``C >= classes``.

    Without this, a model returning ``(B,)``, ``(B, C, H, W)`` or too few classes fails deep
    inside ``cross_entropy`` (or, on a GPU, with a device-side assert that breaks the process).
    """
    if not isinstance(logits, torch.Tensor):
        raise invalid(
            "model",
            "a model whose forward returns a tensor of logits",
            where=what,
            got=f"a model that returned {type(logits).__name__}, not a tensor",
            fix="Make its forward return only the (batch, classes) logits (e.g. wrap it and "
            "return out[0] or out.logits).",
        )
    c = int(logits.shape[1]) if logits.ndim == 2 else 0
    if logits.ndim != 2 or logits.shape[0] != n or c < classes or not logits.is_floating_point():
        raise invalid(
            "model",
            f"a model whose output for a batch of {n} samples is float logits of shape ({n}, C) "
            f"with C >= {classes}, one column per class (the labels run 0..{classes - 1})",
            where=what,
            got=f"the model's output for a batch of {n} samples has shape "
            f"{tuple(logits.shape)} ({logits.dtype})",
            fix=f"Build the model with num_classes={classes}, and make it return one row of "
            "class scores per sample (no spatial maps, no squeezed single column).",
        )


def resolve_loss(loss: Any, *, where: str) -> Loss:
    """``loss`` (a name from :data:`LOSSES` or a function) as a :class:`Loss`."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss in LOSSES:
            return Loss(loss)
        if ":" in loss:  # an import path, as stored in a run's config
            return loss_from_config(loss, where=where)
    elif callable(loss) and not isinstance(loss, type):
        path = import_path(loss)
        name = path or f"{getattr(loss, '__module__', '?')}:{getattr(loss, '__qualname__', '?')}"
        return Loss(name, fn=loss, rebuildable=path is not None)
    raise invalid(
        "loss",
        f"one of {list(LOSSES)}, a function fn(outputs, targets) returning one loss per sample, "
        "or its import path 'pkg.module:function'",
        loss,
        where=where,
    )


def loss_from_config(value: str, *, where: str) -> Loss:
    """The loss a run's config names: a name from :data:`LOSSES` or an import path."""
    if value in LOSSES:
        return Loss(value)
    module, _, qual = value.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise invalid(
            "loss",
            "a loss function that can be imported ('pkg.module:function')",
            value,
            where=where,
            fix=f"Make module {module!r} importable (installed, or on PYTHONPATH) ({exc}).",
        ) from None
    if not callable(obj):
        raise invalid("loss", "a function", value, where=where, got=type(obj).__name__)
    return Loss(value, fn=obj)
