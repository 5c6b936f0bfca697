"""The default number of samples per forward pass for repeated evaluations of one model.

Grid evaluation and Hessian-vector products run the same model over the same data many times.
On a CPU the speed of that loop depends on whether a batch's activations stay in the caches:
one forward pass over 2,000 CIFAR-sized images ran 2.2-2.6x slower per sample than batches of
128 for small convolutional nets (``benchmarks/bench_landscape.py``), and a pass over all samples
of a big set may not fit in memory at all. :func:`auto_batch_size` therefore sizes batches by the
model's largest activation: one forward pass over a single sample, with hooks on every leaf
module, finds the largest output per sample, and the batch holds as many samples as keep that
output under a budget (8 MiB on a CPU, 512 MiB on an accelerator), times the number of grid
points evaluated together. Models with small activations (MLPs on digits) get every sample in
one pass, as before.
"""

from __future__ import annotations

import torch
from torch import nn

CPU_BUDGET_BYTES = 8 * 2**20
ACCELERATOR_BUDGET_BYTES = 512 * 2**20
MIN_BATCH = 16


def largest_activation_bytes(model: nn.Module, sample: torch.Tensor) -> int:
    """Bytes of the largest output of any leaf module of ``model`` for the one-sample batch
    ``sample`` (at least the input's own size). Runs one forward pass without gradients, in
    eval mode (so BatchNorm statistics are not touched), and restores the model's mode."""
    largest = sample.numel() * sample.element_size()

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for o in outs:
            if isinstance(o, torch.Tensor):
                largest = max(largest, o.numel() * o.element_size())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(largest)


def auto_batch_size(
    model: nn.Module,
    inputs: torch.Tensor,
    device: torch.device,
    *,
    points: int = 1,
) -> int:
    """Samples per forward pass for ``model`` on ``inputs`` (see the module docs).

    ``points`` is how many parameter sets are evaluated together (vmapped grid points); their
    activations share the budget. The result is between ``min(16, n)`` and ``n``, the number of
    samples. A model whose one-sample forward pass fails gets all samples at once, and the real
    evaluation raises the real error.
    """
    n = int(inputs.shape[0])
    try:
        per_sample = largest_activation_bytes(model, inputs[:1].to(device))
    except Exception:  # noqa: BLE001 -- the evaluation that follows reports it properly
        return n
    budget = CPU_BUDGET_BYTES if device.type == "cpu" else ACCELERATOR_BUDGET_BYTES
    size = budget // max(per_sample * max(int(points), 1), 1)
    return int(min(n, max(MIN_BATCH, size)))
