"""Int8 Linear layers: per-output-channel int8 weights, per-token int8 activations.

Why not a library call (measured on this project's 2-core CPU, see docs/benchmarks):
- ``torch.ao.quantization.quantize_dynamic`` quantizes a whole activation tensor with one scale.
  Fast, but on the real all-MiniLM-L6-v2 weights its vectors fall to cosine 0.91 against fp32:
  one outlier token flattens every other token of the batch.
- torchao's ``Int8DynamicActivationInt8WeightConfig`` uses the scheme below (cosine 0.996), but
  without ``torch.compile`` it ran 2.6x *slower* than fp32 on CPU.
So this module does the same arithmetic as torchao's config with plain torch ops: each row of
the activations gets its own scale, the int8 x int8 product runs in ``torch._int_mm`` (oneDNN,
VNNI where the CPU has it) and is rescaled to float32.
"""

from __future__ import annotations

import torch

INT8_MAX = 127.0


def _symmetric_int8(values: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``values`` to int8 with one symmetric scale per slice along ``dim``."""
    scale = values.abs().amax(dim=dim, keepdim=True).clamp(min=1e-12) / INT8_MAX
    quantized = torch.round(values / scale).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return quantized, scale


class Int8Linear(torch.nn.Module):
    """A drop-in for ``torch.nn.Linear`` at inference: ``y = x @ W.T + b`` in int8 arithmetic."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight, weight_scale = _symmetric_int8(linear.weight.detach().float(), dim=1)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_buffer("weight_t", weight.t().contiguous())  # (in, out) for _int_mm
        self.register_buffer("weight_scale", weight_scale.reshape(1, -1))
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    @property
    def weight(self) -> torch.Tensor:
        """The int8 weight as (out, in), for code that inspects ``.weight`` (T5 checks its dtype)."""
        return self.weight_t.t()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Quantize each token's activations, multiply in int32, rescale to float32."""
        rows = inputs.reshape(-1, self.in_features).float()
        quantized, row_scale = _symmetric_int8(rows, dim=1)
        product = torch._int_mm(quantized, self.weight_t).float() * row_scale * self.weight_scale
        if self.bias is not None:
            product = product + self.bias
        return product.reshape(*inputs.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_linears(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``torch.nn.Linear`` inside ``module`` with :class:`Int8Linear`, in place."""
    for name, child in list(module.named_children()):
        if type(child) is torch.nn.Linear:
            setattr(module, name, Int8Linear(child))
        else:
            quantize_linears(child)
    return module
