"""Dense: a linear projection with an activation, stored the way sentence-transformers stores it."""

from __future__ import annotations

import importlib

from torch import Tensor, nn

_ACTIVATIONS = ("Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU", "LeakyReLU", "ELU")


def activation_from_name(name: str) -> nn.Module:
    """Build `torch.nn.<Activation>` from a dotted name such as `torch.nn.modules.activation.Tanh`.

    Only parameter-free activations from `torch.nn` are accepted, so a config file cannot import
    arbitrary code.
    """
    module_name, _, cls_name = name.rpartition(".")
    if not module_name.startswith("torch.nn") or cls_name not in _ACTIVATIONS:
        raise ValueError(
            f"Unsupported Dense activation {name!r}; "
            f"use one of torch.nn.{{{','.join(_ACTIVATIONS)}}}."
        )
    return getattr(importlib.import_module(module_name), cls_name)()


def activation_name(activation: nn.Module) -> str:
    cls = type(activation)
    return f"{cls.__module__}.{cls.__name__}"


class Dense(nn.Module):
    """`activation(linear(x))`, as in sentence-transformers' Dense module (keys `linear.*`)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: nn.Module | str = "torch.nn.Tanh",
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = (
            activation_from_name(activation) if isinstance(activation, str) else activation
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.linear(x))

    def config(self) -> dict[str, object]:
        return {
            "in_features": self.linear.in_features,
            "out_features": self.linear.out_features,
            "bias": self.linear.bias is not None,
            "activation_function": activation_name(self.activation),
        }

    @classmethod
    def from_config(cls, config: dict) -> Dense:
        return cls(
            int(config["in_features"]),
            int(config["out_features"]),
            bias=bool(config.get("bias", True)),
            activation=config.get("activation_function", "torch.nn.modules.linear.Identity"),
        )
