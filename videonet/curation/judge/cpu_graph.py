"""Graph rewrites that make the classifier fast on a CPU, each keeping its outputs.

The filter spends nearly all its time in the classifier's forward pass, and on CPU most of that
went to work around the convolutions rather than in them. oneDNN's own timings for ResNet-50 in
bf16, 8 frames per forward, BatchNorm already folded: 23 ms/frame convolving, 24 ms/frame laying
the weights out again on every forward, and ~95 ms/frame in the ReLUs, residual adds and their
output allocations. Two rewrites remove that work:

- :func:`fold_batchnorm` folds each BatchNorm into the convolution before it;
- :func:`fuse_onednn` lays each convolution's weights out once in oneDNN's blocked format and
  runs the activation after it (ReLU, ReLU6), or the residual add (and ReLU), inside the same
  oneDNN call. On ResNet-50 in bf16 the forward went from ~140 to ~20 ms/frame on a quiet core.

``torch.compile`` does the same fusions (they are its CPU lowering), but took minutes to compile
on a small CPU; this is a hand-written subset of it, on a ``torch.fx`` graph. What it does not
recognise (a convolution whose weights are computed in ``forward``, string padding) is left as
it is, so any model still runs, only less fused.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.modules.utils import _pair
from torch.nn.utils.fusion import fuse_conv_bn_eval

CROP = 224  # the filter feeds 224 x 224 frames only: the size the weights are laid out for


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """Fold every BatchNorm that directly follows a convolution into that convolution's weights.

    Why: in inference BatchNorm is a fixed per-channel affine map, yet on CPU it costs about a third
    of these nets' forward time (a separate pass over every activation). torch's own FX pass
    (``torch.fx.experimental.optimization.fuse``) matches only modules whose type *is*
    ``nn.Conv2d``, which misses EfficientNet-lite's padding ``Conv2d`` subclass; this is the same
    graph rewrite with ``isinstance``, using torch's ``fuse_conv_bn_eval`` for the arithmetic.
    The model must be in eval mode; outputs equal the unfolded model's up to float rounding.
    """

    class ConvLeafTracer(fx.Tracer):
        def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
            return isinstance(module, nn.Conv2d) or super().is_leaf_module(module, qualname)

    graph = fx.GraphModule(model, ConvLeafTracer().trace(model))
    modules = dict(graph.named_modules())
    for node in list(graph.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if (isinstance(modules.get(node.target), nn.BatchNorm2d) and isinstance(conv, fx.Node)
                and conv.op == "call_module" and isinstance(modules.get(conv.target), nn.Conv2d)
                and len(conv.users) == 1):
            parent, _, attr = conv.target.rpartition(".")
            setattr(graph.get_submodule(parent), attr, fuse_conv_bn_eval(modules[conv.target], modules[node.target]))
            node.replace_all_uses_with(conv)
            graph.graph.erase_node(node)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def onednn_fusion_available() -> bool:
    """Whether this torch build has the oneDNN convolution ops that ``torch.compile`` lowers to on CPU."""
    ops = ("_convolution_pointwise", "_reorder_convolution_weight")
    return torch.backends.mkldnn.is_available() and all(hasattr(torch.ops.mkldnn, op) for op in ops)


@dataclass
class ConvCall:
    """One 2-d convolution in the graph, whatever spelled it: its input node and its parameters."""

    input: fx.Node
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    groups: int


class OneDNNConv2d(nn.Module):
    """A convolution with prepacked weights; the activation, or the residual add (+ ReLU), after it as oneDNN post-ops.

    These are the ops Inductor emits for a frozen CPU graph (``torch.ops.mkldnn``); calling them
    here gets their gain without ``torch.compile``, which took minutes to compile on a small CPU.
    """

    def __init__(self, conv: ConvCall, input_size: list[int], activation: tuple[str, list[float]] | None,
                 residual: bool, dtype: torch.dtype):
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.unary, self.scalars = activation or ("none", [])
        self.residual = residual
        # Laid out once, in the blocked format oneDNN picks for this input size; the plain module
        # re-lays out every weight on every forward (as long as the convolutions themselves take here).
        self.register_buffer("weight", torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach().to(dtype), self.padding, self.stride, self.dilation, self.groups, input_size))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().to(dtype))

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        args = (self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        if self.residual:  # oneDNN runs no activation after a residual add but ReLU; the match respects that
            unary = "relu" if self.unary == "relu" else None
            return torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args, "add", 1.0, unary, [], None)
        return torch.ops.mkldnn._convolution_pointwise(x, *args, self.unary, self.scalars, None)


def _tensor(graph: fx.GraphModule, node: object) -> torch.Tensor | None:
    """The parameter or buffer a ``get_attr`` node names; None for anything else."""
    if isinstance(node, fx.Node) and node.op == "get_attr":
        return functools.reduce(getattr, node.target.split("."), graph)
    return None


def conv_call(node: fx.Node, graph: fx.GraphModule, modules: dict) -> ConvCall | None:
    """``node`` as a convolution oneDNN can run: an ``nn.Conv2d`` with its own forward, or a
    ``conv2d`` call on the graph's own weights (what a ``Conv2d`` subclass with a custom forward,
    such as EfficientNet-lite's "SAME" padding, traces into). None for anything else."""
    if node.op == "call_module":
        conv = modules.get(node.target)
        if (isinstance(conv, nn.Conv2d) and type(conv).forward is nn.Conv2d.forward
                and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)):
            return ConvCall(node.args[0], conv.weight, conv.bias, list(conv.stride), list(conv.padding),
                            list(conv.dilation), conv.groups)
        return None
    if node.op != "call_function" or node.target not in (F.conv2d, torch.conv2d):
        return None
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    call = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, **dict(zip(names, node.args)), **node.kwargs}
    weight, bias = _tensor(graph, call["weight"]), _tensor(graph, call["bias"])
    if weight is None or weight.dim() != 4 or (call["bias"] is not None and bias is None) or isinstance(call["padding"], str):
        return None
    return ConvCall(call["input"], weight, bias, list(_pair(call["stride"])), list(_pair(call["padding"])),
                    list(_pair(call["dilation"])), call["groups"])


def _fold_zero_pad(conv: ConvCall, modules: dict) -> None:
    """Absorb a symmetric ``ZeroPad2d`` feeding only this convolution into its padding.

    EfficientNet-lite pads its stride-1 convolutions this way ("SAME"); its stride-2 ones pad
    one pixel more on the right and bottom, which oneDNN's symmetric padding cannot say: those
    keep their ``ZeroPad2d``.
    """
    pad = conv.input
    module = modules.get(pad.target) if pad.op == "call_module" else None
    if isinstance(module, nn.ZeroPad2d) and len(pad.users) == 1:
        left, right, top, bottom = module.padding
        if left == right and top == bottom:
            conv.input, conv.padding = pad.args[0], [conv.padding[0] + top, conv.padding[1] + left]


def activation(node: fx.Node, modules: dict) -> tuple[str, list[float]] | None:
    """The oneDNN post-op for an activation node: ReLU, or ReLU6 / Hardtanh as a clamp. None otherwise."""
    module = modules.get(node.target) if node.op == "call_module" else None
    if (type(module) is nn.ReLU or (node.op == "call_function" and node.target in (torch.relu, torch.relu_, F.relu))
            or (node.op == "call_method" and node.target in ("relu", "relu_"))):
        return "relu", []
    if isinstance(module, nn.Hardtanh):  # nn.ReLU6 included
        return "hardtanh", [float(module.min_val), float(module.max_val)]
    if node.op == "call_function" and node.target is F.relu6:
        return "hardtanh", [0.0, 6.0]
    return None


def _is_add(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add) and not node.kwargs


def _only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def fuse_onednn(graph: fx.GraphModule, dtype: torch.dtype, batch: int) -> fx.GraphModule:
    """Replace each convolution, with the activation or residual add (+ ReLU) right after it, by one :class:`OneDNNConv2d`.

    Run after :func:`fold_batchnorm` (a BatchNorm between a convolution and its activation blocks
    the match) on a graph in ``dtype``; ``batch`` is the forward batch size the weights are laid
    out for (other sizes still work). The graph is traced again through modules outside
    ``torch.nn``, so that convolutions with a custom forward show up as ``conv2d`` calls. Returns
    the graph unchanged where this torch lacks the ops.
    """
    if not onednn_fusion_available():
        return graph
    graph = fx.GraphModule(graph, fx.Tracer().trace(graph))
    example = torch.zeros(batch, 3, CROP, CROP, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ShapeProp(graph).propagate(example)  # every node's output shape: the convolutions' input sizes
    modules = dict(graph.named_modules())
    fused_count = 0
    for node in list(graph.graph.nodes):
        conv = conv_call(node, graph, modules)
        if conv is None:
            continue
        _fold_zero_pad(conv, modules)
        chain, residual, act = [node], None, None
        user = _only_user(node)
        if user is not None and _is_add(user) and node in user.args[:2]:
            other = user.args[1] if user.args[0] is node else user.args[0]
            if isinstance(other, fx.Node) and other is not node:
                chain, residual = [node, user], other
                after = _only_user(user)
                if after is not None and activation(after, modules) == ("relu", []):
                    chain, act = chain + [after], ("relu", [])
        elif user is not None and (act := activation(user, modules)) is not None:
            chain = [node, user]
        fused = OneDNNConv2d(conv, list(conv.input.meta["tensor_meta"].shape), act, residual is not None, dtype)
        name, fused_count = f"onednn_conv_{fused_count}", fused_count + 1
        graph.add_module(name, fused)
        with graph.graph.inserting_after(chain[-1]):
            new = graph.graph.call_module(name, (conv.input,) if residual is None else (conv.input, residual))
        new.meta = chain[-1].meta  # its output is the chain's: later convolutions read their input size here
        chain[-1].replace_all_uses_with(new)
        for old in reversed(chain):
            graph.graph.erase_node(old)
    graph.graph.eliminate_dead_code()  # the folded pads and the weights' get_attr nodes
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph
