"""The model zoo: image classifiers registered by name, each sized by input channels and size.

Holds :func:`create_model` and :func:`list_models` and the networks behind them:

``resnet20``, ``resnet56``, ``resnet``
    CIFAR ResNets (He et al. 2016): three stages of basic blocks with ``width``, ``2 width``,
    ``4 width`` channels; ``depth = 6 n + 2``. ``skip=False`` removes every shortcut (identity and
    projection alike), leaving a plain network of the same depth, as in Li et al. (2018).
``wrn16``
    Wide ResNet WRN-16-k (Zagoruyko & Komodakis 2016), pre-activation blocks, ``widen=k``.
``vgg9``
    Seven 3x3 conv layers with batch norm and two linear layers (9 weight layers).
``cnn``, ``mlp``
    Small networks sized for the 8x8 digits.

Every model accepts any ``in_channels`` and any ``input_size >= 4`` (pools are skipped once the
feature map is 1x1), so all of them run on 1x8x8 digits. Models are created with the current
torch RNG: call ``torch.manual_seed`` first for reproducible weights. This module does not
train, record or load checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sampletopo._errors import ParameterError
from sampletopo._validation import check_bool, check_choice, check_int, check_real, invalid

__all__ = ["create_model", "list_models", "model_kwargs", "check_model_options"]


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation ResNet block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    With ``skip=False`` the shortcut term is absent (no identity, no projection).
    """

    def __init__(self, cin: int, cout: int, stride: int, *, skip: bool) -> None:
        super().__init__()
        self.conv1 = _conv3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = skip
        self.shortcut: nn.Module | None = None
        if skip and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return torch.relu(out)


class CifarResNet(nn.Module):
    """ResNet for small images: stem conv, three stages of ``n`` blocks, global pool, linear."""

    def __init__(
        self, *, depth: int, width: int, num_classes: int, in_channels: int, skip: bool
    ) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(_conv3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU())
        layers: list[nn.Module] = []
        cin = width
        for stage, mult in enumerate((1, 2, 4)):
            cout = width * mult
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(BasicBlock(cin, cout, stride, skip=skip))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class WideBlock(nn.Module):
    """Pre-activation wide block: ``conv(relu(bn(conv(relu(bn(x)))))) + shortcut``."""

    def __init__(self, cin: int, cout: int, stride: int, *, dropout: float, skip: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv3(cout, cout)
        self.skip = skip
        self.shortcut: nn.Module | None = None
        if skip and (stride != 1 or cin != cout):
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv2(self.drop(torch.relu(self.bn2(self.conv1(pre)))))
        if not self.skip:
            return out
        # As in the WRN paper, a projection shortcut sees the pre-activated input.
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-k: stem conv, three stages with ``16k, 32k, 64k`` channels, BN-ReLU, pool, linear."""

    def __init__(
        self,
        *,
        depth: int,
        widen: int,
        width: int,
        dropout: float,
        num_classes: int,
        in_channels: int,
        skip: bool,
    ) -> None:
        super().__init__()
        n = (depth - 4) // 6
        self.stem = _conv3(in_channels, width)
        blocks: list[nn.Module] = []
        cin = width
        for stage, mult in enumerate((1, 2, 4)):
            cout = width * widen * mult
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(WideBlock(cin, cout, stride, dropout=dropout, skip=skip))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class VGG(nn.Module):
    """Conv-BN-ReLU stack with max-pools (skipped once the map is 1x1), global pool, two linears."""

    def __init__(
        self,
        *,
        channels: Sequence[int],
        pool_after: Sequence[int],
        hidden: int,
        num_classes: int,
        in_channels: int,
        input_size: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = in_channels, input_size
        for i, cout in enumerate(channels):
            layers += [_conv3(cin, cout), nn.BatchNorm2d(cout), nn.ReLU()]
            if i in pool_after and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class SmallCNN(nn.Module):
    """Three 3x3 convs (``width``, ``2 width``, ``2 width``) with one max-pool, global pool, linear."""

    def __init__(
        self, *, width: int, batchnorm: bool, num_classes: int, in_channels: int, input_size: int
    ) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)
            return [conv, nn.BatchNorm2d(cout), nn.ReLU()] if batchnorm else [conv, nn.ReLU()]

        layers = block(in_channels, width) + block(width, 2 * width)
        if input_size >= 2:
            layers.append(nn.MaxPool2d(2))
        layers += block(2 * width, 2 * width)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class MLP(nn.Module):
    """Flatten, then linear-ReLU layers of the ``hidden`` sizes, then a linear classifier."""

    def __init__(
        self, *, hidden: Sequence[int], num_classes: int, in_channels: int, input_size: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        cin = in_channels * input_size * input_size
        for h in hidden:
            layers += [nn.Linear(cin, h), nn.ReLU()]
            cin = h
        layers.append(nn.Linear(cin, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., nn.Module]
    defaults: dict[str, Any]
    residual: bool
    summary: str


def _pos_int(name: str, value: Any, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(name, "a positive int", value, where=f"model {model!r}", kind="option")
    return int(value)


def _check_depth(depth: int, offset: int, model: str, examples: str) -> None:
    """ResNets of CIFAR stack 3 stages of n blocks: depth = 6n + offset, n >= 1."""
    if (depth - offset) % 6 or depth < 6 + offset:
        allowed = f"6n+{offset} with n >= 1 ({examples}, ...)"
        raise invalid("depth", allowed, depth, where=model, kind="option")


def _resnet(depth_default: int) -> Callable[..., nn.Module]:
    def build(*, depth: int, width: int, skip: bool, **common: Any) -> nn.Module:
        _check_depth(depth, 2, "a CIFAR ResNet", "8, 14, 20, 32, 44, 56, 110")
        common.pop("input_size")
        return CifarResNet(depth=depth, width=width, skip=skip, **common)

    return build


def _wrn(
    *, depth: int, widen: int, width: int, dropout: float, skip: bool, **common: Any
) -> nn.Module:
    _check_depth(depth, 4, "a Wide ResNet", "10, 16, 22, 28, 40")
    common.pop("input_size")
    return WideResNet(
        depth=depth, widen=widen, width=width, dropout=float(dropout), skip=skip, **common
    )


def _vgg9(*, width: int, skip: bool, **common: Any) -> nn.Module:
    w = width
    return VGG(
        channels=(w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w, 8 * w),
        pool_after=(0, 1, 3, 5, 6),
        hidden=8 * w,
        **common,
    )


def _cnn(*, width: int, batchnorm: bool, skip: bool, **common: Any) -> nn.Module:
    return SmallCNN(width=width, batchnorm=bool(batchnorm), **common)


def _mlp(*, hidden: Sequence[int], skip: bool, **common: Any) -> nn.Module:
    return MLP(hidden=list(hidden), **common)


_REGISTRY: dict[str, _Entry] = {
    "resnet20": _Entry(_resnet(20), {"depth": 20, "width": 16}, True, "CIFAR ResNet-20"),
    "resnet56": _Entry(_resnet(56), {"depth": 56, "width": 16}, True, "CIFAR ResNet-56"),
    "resnet": _Entry(_resnet(20), {"depth": 20, "width": 16}, True, "CIFAR ResNet, any depth 6n+2"),
    "wrn16": _Entry(
        _wrn, {"depth": 16, "widen": 4, "width": 16, "dropout": 0.0}, True, "Wide ResNet-16-k"
    ),
    "vgg9": _Entry(_vgg9, {"width": 64}, False, "VGG-9 with batch norm"),
    "cnn": _Entry(_cnn, {"width": 32, "batchnorm": False}, False, "small CNN for digits"),
    "mlp": _Entry(_mlp, {"hidden": [128, 64]}, False, "two-hidden-layer MLP for digits"),
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def model_kwargs(name: str) -> dict[str, Any]:
    """The model-specific options of ``name`` with their defaults (besides ``skip``)."""
    return dict(_check_name(name).defaults)


def is_residual(name: str) -> bool:
    """Whether ``name`` has skip connections that ``skip=False`` removes."""
    return _check_name(name).residual


def _check_name(name: str) -> _Entry:
    check_choice("name", name, list_models(), where="the model registry")
    return _REGISTRY[name]


def _check_known(name: str, options: Any, entry: _Entry) -> None:
    """Refuse options ``name`` does not have (``skip`` is every model's)."""
    unknown = sorted(set(map(str, options)) - set(entry.defaults) - {"skip"})
    if unknown:
        raise ParameterError(
            f"Unknown option(s) {unknown} for model {name!r}. Allowed options: "
            f"{sorted([*entry.defaults, 'skip'])}.",
            parameter=unknown[0],
        )


def check_model_options(name: str, options: Any, *, where: str = "create_model") -> dict[str, Any]:
    """Check model options (and ``skip``) for ``name`` without building the model.

    Returns the options with every default filled in and normalised (``hidden=64`` becomes
    ``[64]``). ``depth``, ``width`` and ``widen`` must be positive ints, ``hidden`` a positive
    int or a list of them, ``dropout`` a number in [0, 1), ``batchnorm`` and ``skip`` bools.
    The training config calls this before any folder is written; :func:`create_model` calls it
    too.

    Raises
    ------
    ParameterError
        ``options`` is not a mapping (e.g. ``model_kwargs = 3`` in a TOML file), or holds an
        unknown option or a value of the wrong type or range.
    """
    entry = _check_name(name)
    if not isinstance(options, Mapping):
        raise ParameterError(
            f"The model options of {where} must be a table (mapping) of option -> value, e.g. "
            f"{{'width': 8}}. Got {options!r} ({type(options).__name__}) instead. In a TOML "
            "file write [model_kwargs] followed by one 'name = value' line per option.",
            parameter="model_kwargs",
        )
    _check_known(name, options, entry)
    opts = {**entry.defaults, **dict(options)}
    skip = opts.pop("skip", True)
    model = f"model {name!r}"
    if not isinstance(skip, bool):
        raise invalid("skip", "true or false", skip, where=model, kind="option")
    for key in ("depth", "width", "widen"):
        if key in opts:
            opts[key] = _pos_int(key, opts[key], name)
    if "dropout" in opts:
        d = opts["dropout"]
        opts["dropout"] = check_real(
            "dropout", d, low=0, high=1, high_open=True, where=model, kind="option"
        )
    if "batchnorm" in opts and not isinstance(opts["batchnorm"], bool):
        raise invalid("batchnorm", "true or false", opts["batchnorm"], where=model, kind="option")
    if "hidden" in opts:
        h = opts["hidden"]
        sizes = [h] if isinstance(h, int) and not isinstance(h, bool) else h
        if not isinstance(sizes, (list, tuple)):
            raise invalid(
                "hidden",
                "a positive int or a list of them (one per hidden layer)",
                h,
                where=model,
                kind="option",
            )
        opts["hidden"] = [_pos_int("hidden", v, name) for v in sizes]
    return {"skip": skip, **opts}


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    skip: bool = True,
    **kw: Any,
) -> nn.Module:
    """Build a registered model with freshly initialised weights.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    num_classes, in_channels, input_size : int
        Output classes, input channels and (square) input side; e.g. ``1`` and ``8`` for digits.
    skip : bool
        Keep the skip connections (ResNets and WRN). ``False`` removes every shortcut. Models
        without skip connections (vgg9, cnn, mlp) are the same either way.
    **kw
        Model options; see :func:`model_kwargs` (``depth``, ``width``, ``widen``, ``dropout``,
        ``hidden``, ``batchnorm``). Unknown options raise :class:`~sampletopo.ParameterError`.

    Returns
    -------
    torch.nn.Module
        In training mode, on the CPU.

    Examples
    --------
    >>> import torch
    >>> m = create_model("resnet20", skip=False, num_classes=10, in_channels=1, input_size=8)
    >>> m(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    entry = _check_name(name)
    _check_known(name, kw, entry)
    check_bool("skip", skip, where="create_model")
    opts = check_model_options(name, {**kw, "skip": skip})
    opts.pop("skip")
    num_classes = _pos_int("num_classes", num_classes, name)
    in_channels = _pos_int("in_channels", in_channels, name)
    input_size = _pos_int("input_size", input_size, name)
    check_int("input_size", input_size, 4, None, where="create_model")
    try:
        return entry.build(
            skip=skip,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            **opts,
        )
    except (MemoryError, RuntimeError) as exc:
        # Options like width=10**6 pass the type checks but ask for more memory than there is;
        # torch reports that from deep inside its allocator. Other RuntimeErrors are bugs.
        if not isinstance(exc, MemoryError) and "alloc" not in str(exc):
            raise
        raise ParameterError(
            f"Model {name!r} with options {opts} (num_classes={num_classes}) is too large to "
            "allocate here. Use smaller width/widen/depth/hidden options.",
            parameter="model_kwargs",
        ) from None
