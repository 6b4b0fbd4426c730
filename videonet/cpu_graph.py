"""Graph rewrites that make the classifier fast on a CPU, each keeping its outputs.

The filter spends nearly all its time in the classifier's forward pass, and on CPU most of that
went to work around the convolutions rather than in them. oneDNN's own timings for ResNet-50 in
bf16, 8 frames per forward, BatchNorm already folded: 23 ms/frame convolving, 24 ms/frame laying
the weights out again on every forward, and ~95 ms/frame in the ReLUs, residual adds and their
output allocations. Two rewrites remove that work:

- :func:`fold_batchnorm` folds each BatchNorm into the convolution before it;
- :func:`fuse_onednn` lays each plain convolution's weights out once in oneDNN's blocked format
  and runs the ReLU, or the residual add and ReLU, after it inside the same oneDNN call.

Both work on a ``torch.fx`` graph; what they do not recognise (a ``Conv2d`` subclass with its own
``forward``, say) is left as it is, so any model still runs, only less fused.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
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


class OneDNNConv2d(nn.Module):
    """Conv2d with prepacked weights, and the ReLU or residual add + ReLU after it as oneDNN post-ops.

    These are the ops Inductor emits for a frozen CPU graph (``torch.ops.mkldnn``); calling them
    here gets their gain without ``torch.compile``, which took minutes to compile on a small CPU.
    """

    def __init__(self, conv: nn.Conv2d, input_size: list[int], relu: bool, residual: bool, dtype: torch.dtype):
        super().__init__()
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.relu, self.residual = relu, residual
        weight = conv.weight.detach().to(dtype)
        # Laid out once, in the blocked format oneDNN picks for this input size; the plain module
        # re-lays out every weight on every forward (as long as the convolutions themselves take here).
        self.register_buffer("weight", torch.ops.mkldnn._reorder_convolution_weight(
            weight, self.padding, self.stride, self.dilation, self.groups, input_size))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().to(dtype))

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        args = (self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        unary = "relu" if self.relu else None
        if self.residual:
            return torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args, "add", 1.0, unary, [], None)
        return torch.ops.mkldnn._convolution_pointwise(x, *args, unary or "none", [], None)


def _is_plain_conv(module: object) -> bool:
    """A 2-d convolution whose forward is ``nn.Conv2d``'s own, with numeric zero padding."""

    return (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))


def _is_relu(node: fx.Node, modules: dict) -> bool:

    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in (torch.relu, torch.relu_, nn.functional.relu) and not node.kwargs.get("inplace", False)
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _is_add(node: fx.Node) -> bool:

    return node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add) and not node.kwargs


def fuse_onednn(graph: fx.GraphModule, dtype: torch.dtype, batch: int) -> fx.GraphModule:
    """Replace each plain ``Conv2d`` (+ ReLU, or + residual add + ReLU) by one :class:`OneDNNConv2d` call.

    Run after :func:`fold_batchnorm` (BatchNorm between a convolution and its ReLU blocks the
    match) on a graph in ``dtype``; ``batch`` is the forward batch size the weights are laid out
    for (other sizes still work). Returns the graph unchanged where this torch lacks the ops.
    """

    if not onednn_fusion_available():
        return graph
    example = torch.zeros(batch, 3, CROP, CROP, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ShapeProp(graph).propagate(example)  # every node's output shape: the conv input sizes
    modules = dict(graph.named_modules())
    for node in list(graph.graph.nodes):
        if node.op != "call_module" or not _is_plain_conv(modules.get(node.target)):
            continue
        chain, residual = [node], None
        user = next(iter(node.users)) if len(node.users) == 1 else None
        if user is not None and _is_add(user) and len(user.users) == 1 and _is_relu(next(iter(user.users)), modules):
            residual = user.args[1] if user.args[0] is node else user.args[0]
            if isinstance(residual, fx.Node) and residual is not node:
                chain += [user, next(iter(user.users))]
        elif user is not None and _is_relu(user, modules):
            chain.append(user)
        fused = OneDNNConv2d(modules[node.target], list(node.args[0].meta["tensor_meta"].shape),
                           relu=len(chain) > 1, residual=len(chain) == 3, dtype=dtype)
        name = node.target.replace(".", "_") + "_onednn"
        graph.add_module(name, fused)
        with graph.graph.inserting_after(chain[-1]):
            new = graph.graph.call_module(name, (node.args[0], residual) if len(chain) == 3 else (node.args[0],))
        new.meta = chain[-1].meta  # its output is the chain's: later convolutions read their input size here
        chain[-1].replace_all_uses_with(new)
        for old in reversed(chain):
            graph.graph.erase_node(old)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph
