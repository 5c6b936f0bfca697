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
torch RNG: call ``torch.manual_seed`` first for reproducible weights.

Models of your own are named by import path, ``"pkg.module:factory"`` (a class or a function
returning an ``nn.Module``), and torchvision's classifiers as ``"torchvision:resnet18"``:
:func:`build_model` builds any of the three, :func:`model_spec` turns a factory into the string a
run config stores, and :func:`check_model_fits` runs one batch through a model to check its
output against the labels before anything trains. This module does not train, record or load
checkpoints.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sampletopo._errors import ParameterError
from sampletopo._imports import (
    check_toml_value,
    import_object,
    import_path_of,
    is_import_path,
)
from sampletopo._validation import check_bool, check_choice, check_int, check_real, invalid

if TYPE_CHECKING:
    from sampletopo.data import Dataset

__all__ = [
    "build_model",
    "check_model_fits",
    "check_model_options",
    "create_model",
    "list_models",
    "model_kwargs",
    "model_spec",
]


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
    name: ModelSpec,
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
    name : str or callable
        One of :func:`list_models`; also ``"torchvision:NAME"``, an import path
        ``"pkg.module:factory"`` or a factory, built by :func:`build_model` for inputs of shape
        ``(in_channels, input_size, input_size)`` (``skip`` does not apply to them).
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
    if not (isinstance(name, str) and name in _REGISTRY) and (
        callable(name) or (isinstance(name, str) and ":" in name)
    ):
        # A model of your own or torchvision's: skip is a zoo option.
        side = _pos_int("input_size", input_size, str(name))
        return build_model(
            name,
            num_classes=_pos_int("num_classes", num_classes, str(name)),
            input_shape=(_pos_int("in_channels", in_channels, str(name)), side, side),
            model_kwargs=kw,
            where="create_model",
        )
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


# ---------------------------------------------------------------------------------------------
# Models of your own: by import path, torchvision's by name

TORCHVISION = "torchvision:"
# What build_model fills in from the data when the factory has a parameter of that name and the
# options do not set it.
_FILLED = ("num_classes", "in_channels", "input_size", "input_shape")
ModelSpec = str | Callable[..., nn.Module]

_MODEL_WHAT = (
    f"a registered model ({', '.join(sorted(_REGISTRY))}), 'torchvision:NAME' or the import path "
    "'pkg.module:factory' of a class or function returning a torch.nn.Module"
)


def _torchvision_name(spec: str, *, where: str | None, kind: str) -> str:
    try:
        from torchvision import models as tvm
    except ImportError:
        raise ParameterError(
            f"The 'model' {kind}{' of ' + where if where else ''} is {spec!r}, but torchvision is "
            "not installed. Install it (pip install torchvision) or name another model.",
            parameter="model",
        ) from None
    name = spec[len(TORCHVISION) :]
    classifiers = sorted(tvm.list_models(module=tvm))
    if name not in classifiers:
        raise invalid(
            "model",
            f"'torchvision:NAME' with NAME one of torchvision's classifiers ({', '.join(classifiers[:8])}, ...)",
            spec,
            where=where,
            kind=kind,
        )
    return name


def model_spec(
    model: Any, *, where: str | None = "the training config", kind: str = "setting"
) -> str:
    """The string a run config stores for ``model``: a zoo name or ``"torchvision:NAME"`` as
    given (checked), an import path checked to import to a callable, or a callable's own import
    path (:func:`~sampletopo._imports.import_path_of`).

    Raises
    ------
    ParameterError
        An unknown name, a path that does not import, or a callable defined where no later
        command can import it (``__main__``, inside a function): move it into a module, or
        pass its path.

    Examples
    --------
    >>> model_spec("mlp"), model_spec(create_model)
    ('mlp', 'sampletopo.models:create_model')
    """
    if isinstance(model, str):
        if model in _REGISTRY:
            return model
        if model.startswith(TORCHVISION):
            _torchvision_name(model, where=where, kind=kind)
            return model
        if not is_import_path(model):
            tv = ""
            if model.isidentifier():
                tv = f" (torchvision's: 'torchvision:{model}' where torchvision has it)"
            check_choice(
                "model",
                model,
                sorted(_REGISTRY),
                where=where,
                kind=kind,
                fix="A model of your own is named by its import path 'pkg.module:factory'; "
                f"torchvision's classifiers as 'torchvision:NAME'{tv}.",
            )
        obj = import_object(model, param="model", where=where, what="a model factory", kind=kind)
        if not callable(obj) or isinstance(obj, nn.Module):
            raise invalid(
                "model",
                "the import path of a class or function that returns a torch.nn.Module",
                where=where,
                kind=kind,
                got=f"{model!r}, which names a {type(obj).__name__}",
                fix="Name the factory (e.g. the class), not a built instance.",
            )
        return model
    if callable(model) and not isinstance(model, nn.Module):
        path = import_path_of(model)
        if path is None:
            name = getattr(model, "__qualname__", repr(model))
            raise invalid(
                "model",
                "a factory that later commands can import again (defined in a module, not in "
                "__main__ or inside a function)",
                where=where,
                kind=kind,
                got=f"{name!r} from {getattr(model, '__module__', '?')!r}",
                fix="Move it into a module (e.g. mynets.py beside your script) and pass it, or "
                "its import path 'mynets:" + str(getattr(model, "__name__", "factory")) + "'.",
            )
        return path
    raise invalid("model", _MODEL_WHAT, model, where=where, kind=kind)


def check_model_kwargs(spec: str, options: Any, *, where: str, kind: str = "setting") -> dict:
    """Options of a model spec checked: a zoo model's as :func:`check_model_options` does
    (defaults filled in); another's only for what a ``config.toml`` can store."""
    if spec in _REGISTRY:
        return check_model_options(spec, options, where=where)
    if not isinstance(options, Mapping):
        raise invalid(
            "model_kwargs", "a table of model options (option -> value)", options, where=where,
            kind=kind,
        )  # fmt: skip
    for key, value in options.items():
        check_toml_value(str(key), value, where=f"{where} (model option of {spec!r})")
    return dict(options)


def build_model(
    model: ModelSpec,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    model_kwargs: Mapping[str, Any] | None = None,
    where: str = "build_model",
) -> nn.Module:
    """A freshly initialised model of any kind a run config can name, sized for the data.

    Parameters
    ----------
    model : str or callable
        A zoo name (:func:`list_models`, built by :func:`create_model`), ``"torchvision:NAME"``
        (``torchvision.models.get_model(NAME, weights=None, num_classes=...)``), an import path
        ``"pkg.module:factory"`` or the factory itself.
    num_classes, input_shape
        From the data: the class count and the shape of one model input (``(C, H, W)``,
        ``(C, L)`` or ``(d,)``).
    model_kwargs : mapping, optional
        Options passed to the factory. A factory of your own is called with them, plus
        ``num_classes``, ``in_channels`` (``input_shape[0]``), ``input_size`` (``input_shape[1]``,
        or ``input_shape[0]`` for ``(d,)``) and ``input_shape`` where its signature has a
        parameter of that name that the options leave out.

    Raises
    ------
    ParameterError
        The factory is not found, raises, or returns something that is not an ``nn.Module``.

    Examples
    --------
    >>> m = build_model("torch.nn:Linear", num_classes=3, input_shape=(4,),
    ...                 model_kwargs={"in_features": 4, "out_features": 3})
    >>> type(m).__name__
    'Linear'
    """
    kwargs = dict(model_kwargs or {})
    shape = tuple(int(v) for v in input_shape)
    if isinstance(model, str) and model in _REGISTRY:
        if len(shape) != 3:
            raise invalid(
                "model",
                "a model of your own ('pkg.module:factory') for inputs that are not images",
                model,
                where=where,
                got=f"zoo model {model!r} (image classifiers) for inputs of shape {shape}",
            )
        return create_model(
            model, num_classes=num_classes, in_channels=shape[0], input_size=shape[1], **kwargs
        )
    spec = model_spec(model, where=where, kind="parameter")
    if spec.startswith(TORCHVISION):
        from torchvision import models as tvm

        name = _torchvision_name(spec, where=where, kind="parameter")
        kwargs.setdefault("num_classes", num_classes)
        return _call_factory(
            lambda **kw: tvm.get_model(name, weights=None, **kw), kwargs, spec, where
        )
    factory = model if callable(model) else import_object(
        spec, param="model", where=where, what="a model factory", kind="parameter"
    )  # fmt: skip
    filled = {
        "num_classes": num_classes,
        "in_channels": shape[0],
        "input_size": shape[1] if len(shape) > 1 else shape[0],
        "input_shape": list(shape),
    }
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: pass the options only
        params = {}  # type: ignore[assignment]
    for key in _FILLED:
        if key in params and key not in kwargs:
            kwargs[key] = filled[key]
    return _call_factory(factory, kwargs, spec, where)


def _call_factory(
    factory: Callable[..., Any], kwargs: dict[str, Any], spec: str, where: str
) -> nn.Module:
    try:
        net = factory(**kwargs)
    except TypeError as exc:
        raise ParameterError(
            f"Model {spec!r} could not be built with options {kwargs} ({where}): {exc}. Pass "
            "the options its factory takes with --model-kw KEY=VALUE (model_kwargs={...}).",
            parameter="model_kwargs",
        ) from None
    except (ValueError, RuntimeError, AssertionError, KeyError) as exc:
        raise ParameterError(
            f"Model {spec!r} raised {type(exc).__name__} while being built with options "
            f"{kwargs} ({where}): {exc}. Check the model options.",
            parameter="model_kwargs",
        ) from None
    if not isinstance(net, nn.Module):
        raise invalid(
            "model",
            "a factory that returns a torch.nn.Module",
            where=where,
            got=f"{spec!r}, which returned a {type(net).__name__}",
            fix="Return the network (an nn.Module) from the factory.",
        )
    return net


def check_model_fits(model: nn.Module, dataset: Dataset, *, where: str, n: int = 4) -> None:
    """Run ``n`` training samples through ``model`` (eval mode, no gradients, on the model's
    device) and refuse, in one :class:`ParameterError` naming the shapes and the fix, a model
    that fails on the inputs or whose output is not ``(n, C)`` logits with ``C`` at least the
    data's class count (every label must be a valid output index)."""
    import torch

    x, y = dataset.tensors("train")
    k = min(n, x.shape[0])
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    xb = x[:k].to(dev)
    shape = tuple(xb.shape[1:])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xb)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ParameterError(
            f"The model ({type(model).__name__}, {where}) fails on a batch of the data's inputs "
            f"of shape ({k}, {', '.join(map(str, shape))}): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Make its first layer take inputs "
            f"of shape {shape} (e.g. in_channels={shape[0]}), or store the data in the shape "
            "the model expects.",
            parameter="model",
        ) from None
    finally:
        model.train(was_training)
    classes = dataset.num_classes
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != k:
        got = out.shape if isinstance(out, torch.Tensor) else type(out).__name__
        raise ParameterError(
            f"The model ({type(model).__name__}, {where}) returns {got} for a batch of {k} "
            f"inputs; per-sample losses need logits of shape ({k}, C) with C >= {classes} (the "
            f"data's classes). Make forward return one row of class scores per sample (flatten "
            f"and end in a Linear(..., {classes})).",
            parameter="model",
        )
    if out.shape[1] < classes:
        top = int(y.max())
        raise ParameterError(
            f"The model ({type(model).__name__}, {where}) has {out.shape[1]} outputs per "
            f"sample, but the data's labels go up to {top} ({classes} classes): labels "
            f"{out.shape[1]}..{top} have no output. Build it with num_classes={classes} (e.g. "
            f"--model-kw num_classes={classes}), or map the labels to 0..{out.shape[1] - 1}.",
            parameter="model",
        )
