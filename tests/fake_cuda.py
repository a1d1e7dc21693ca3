"""A CUDA rehearsal without a GPU: engine code runs on fake tensors of device 'cuda', and a guard fails the test
on what would stall or break a real GPU inside a marked window (a training step, an evaluation).

`FakeTensorMode` (torch's CUDA build) gives tensors shapes, dtypes and devices but no values, so forward passes,
augmentation, masking, evaluation and optimizer steps dispatch every aten operator as on CUDA, with no device. The
guard (`DeviceGuard`, a dispatch mode above it) sees each operator first and, inside a window, refuses:

- a device mix: an operator whose tensor arguments sit on two devices (0-dim CPU tensors are allowed: CUDA
  kernels take them by value);
- a host read: a device value read on the host (`.item()`, `bool()`, `float()`, `.tolist()`, `.numpy()`), an
  operator whose output shape depends on device values (`nonzero`, boolean indexing), a copy to the CPU;
- a host copy: a copy from the CPU to the device (a blocking transfer from pageable memory).

FakeTensorMode refuses some of these by itself; inside a window every one of them is a `DeviceGuardError`.
Outside the windows the engine may read results on purpose (once per round); a fake tensor has no value to read,
so `Rehearsal.answering` supplies stand-ins; but operators on real CPU tensors alone (masks, the starts) run for
real, and small device tensors made from host values (flags, a learning rate) keep them: those read as they are.

What fake tensors cannot run is patched for the rehearsal: the autograd engine's backward (it needs a device)
gives every reachable leaf a zero gradient (`fake_backward`); fused SGD, which has no fake kernel, is a no-op
after its devices are checked; `module.to(...)` replaces a module's tensors (`replacing_module_tensors`).
Numbers, kernels, memory and speed are what only a real GPU shows.
"""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorDeviceMismatchError,
    FakeTensorMode,
    unset_fake_temporarily,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten

# operators whose result the host must wait for: a scalar read, or an output shape set by device values
# (in inference mode torch's composite operators reach the guard undecomposed: `item`, `to`, `conv2d`, ...)
SYNC_OPS = frozenset(
    {"_local_scalar_dense", "item", "is_nonzero", "equal", "allclose", "nonzero", "nonzero_numpy", "argwhere"}
    | {"masked_select", "unique", "_unique2", "unique_consecutive", "unique_dim", "repeat_interleave", "bincount"}
    | {"histc"}
)
BOOLEAN_INDEXING = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})  # x[mask]: nonzero inside
SCALAR_READS = frozenset({"_local_scalar_dense", "item", "is_nonzero"})  # (bool() reads through is_nonzero)
COPY_OPS = frozenset({"_to_copy", "to", "copy_", "_copy_from", "_copy_from_and_resize"})
CONVOLUTIONS = {"convolution": 8, "conv2d": 6}  # where each takes its groups
HOST_VALUE_NUMEL = 64  # at most this many elements: a tensor whose value the host may know (flags, a rate)
NO_FAKE_KERNEL = frozenset({"_fused_sgd_"})  # in place, void: its fake effect is nothing (devices still checked)


def _copy_ends(name: str, args, kwargs) -> tuple[torch.Tensor, torch.device]:
    """(source tensor, destination device) of a copy operator."""
    if name in ("_to_copy", "to"):  # to(self, device | dtype | other, ...) or to(self, *, device=...)
        src, target = args[0], kwargs.get("device")
        if target is None and len(args) > 1 and isinstance(args[1], (torch.device, str, torch.Tensor)):
            target = args[1].device if isinstance(args[1], torch.Tensor) else args[1]
        return src, torch.device(target) if target is not None else src.device
    return args[1], args[0].device  # copy_(self, src) and friends: the destination first


class DeviceGuardError(AssertionError):
    """Inside a guarded window: a device mix, a host read or a host copy."""


@dataclass(frozen=True)
class Violation:
    window: str
    kind: str  # "device mix", "host read" or "host copy"
    op: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.window!r}: {self.op} ({self.detail})"


def _describe(t: torch.Tensor) -> str:
    return f"{t.device.type} {str(t.dtype).removeprefix('torch.')}{list(t.shape)}"


def _on_device(t: torch.Tensor) -> bool:
    return t.device.type not in ("cpu", "meta")


def violation(func, args, kwargs, window: str) -> Violation | None:
    """What `func(*args, **kwargs)` would do wrong on a GPU inside `window`, or None."""
    name = func.overloadpacket.__name__
    tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    if name in SYNC_OPS and any(_on_device(t) for t in tensors):
        return Violation(window, "host read", str(func), ", ".join(_describe(t) for t in tensors))
    if name in BOOLEAN_INDEXING and any(t.dtype == torch.bool and _on_device(t) for t in tree_leaves(args[1:2])):
        return Violation(window, "host read", str(func), "a boolean mask as an index: " + _describe(args[0]))
    if name in COPY_OPS and tensors:
        src, dst = _copy_ends(name, args, kwargs)
        if _on_device(src) and dst.type == "cpu":
            return Violation(window, "host read", str(func), f"{_describe(src)} -> cpu")
        if src.device.type == "cpu" and dst.type not in ("cpu", "meta"):
            return Violation(window, "host copy", str(func), f"{_describe(src)} -> {dst}")
        return None
    devices = {t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
    if len(devices) > 1:
        return Violation(window, "device mix", str(func), ", ".join(_describe(t) for t in tensors))
    return None


class DeviceGuard(TorchDispatchMode):
    """Checks every operator inside a window (`window` not None); `tolerate(violation)` True lets one pass (it is
    kept in `tolerated`). A host read outside a window, or tolerated, reads the value where the host made it
    (`host_values`), else `answer(tensor)` (a fake tensor has no value). Counts the operators run in each window
    (`ops`, by window and name), the dtypes of convolutions and matrix products (`compute_dtypes`) and
    convolutions' groups (`conv_groups`)."""

    def __init__(self, tolerate: Callable[[Violation], bool] | None = None):
        super().__init__()
        self.tolerate = tolerate or (lambda v: False)
        self.window: str | None = None
        self.tolerated: list[Violation] = []
        self.ops: Counter[tuple[str, str]] = Counter()
        self.compute_dtypes: Counter[tuple[str, torch.dtype]] = Counter()
        self.conv_groups: Counter[int] = Counter()
        self.answer: Callable[[torch.Tensor], object] | None = None
        self.host_values = WeakIdKeyDictionary()  # fake tensor -> its value, where the host knows it

    def fail(self, v: Violation) -> None:
        if self.tolerate(v):
            self.tolerated.append(v)
            return
        raise DeviceGuardError(f"the CUDA rehearsal refused a {v}{_caller()}")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if self.window is not None:
            found = violation(func, args, kwargs, self.window)
            if found is not None:
                self.fail(found)
            self.ops[(self.window, name)] += 1
            if name in ("convolution", "conv2d", "bmm", "baddbmm", "mm", "addmm", "matmul"):
                self.compute_dtypes[(name, args[0].dtype)] += 1
            if name in CONVOLUTIONS:
                at = CONVOLUTIONS[name]
                self.conv_groups[args[at] if len(args) > at else kwargs.get("groups", 1)] += 1
        if name in SCALAR_READS and isinstance(args[0], FakeTensor) and args[0].constant is None:
            t = args[0]  # a fake value: the host's own value where it made it, else the caller's stand-in
            if t in self.host_values:
                with unset_fake_temporarily():
                    value = self.host_values[t]
                    return bool(value) if name == "is_nonzero" else value.item()
            if self.answer is None:
                where = f"in {self.window!r} (tolerated)" if self.window else "outside the windows"
                raise DeviceGuardError(
                    f"a host read {where} of a fake {_describe(t)}: it has no value; give one with Rehearsal.answering"
                )
            value = self.answer(t)
            return (
                bool(value)
                if t.dtype == torch.bool or name == "is_nonzero"
                else (float(value) if t.is_floating_point() else int(value))
            )
        if name in NO_FAKE_KERNEL:
            return None
        if _on_the_host(name, args, kwargs):  # host data (masks, the starts): computed for real, values kept
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        out = func(*args, **kwargs)
        self._track_host_values(func, args, kwargs, out)
        return out

    def _track_host_values(self, func, args, kwargs, out) -> None:
        """Small device tensors made from the host's values (flags, a learning rate) keep those values, computed
        on the CPU beside them, so the host may read them; a write forgets them."""
        for i, arg in enumerate(func._schema.arguments):
            if arg.alias_info is not None and arg.alias_info.is_write:
                for t in tree_leaves(args[i] if i < len(args) else kwargs.get(arg.name)):
                    if isinstance(t, torch.Tensor):
                        self.host_values.pop(t, None)
        outs = [o for o in tree_leaves(out) if isinstance(o, torch.Tensor)]
        if (
            len(outs) != 1
            or not isinstance(outs[0], FakeTensor)
            or outs[0].numel() > HOST_VALUE_NUMEL
            or outs[0] in self.host_values
            or torch.Tag.nondeterministic_seeded in func.tags
            or any(a.alias_info is not None and a.alias_info.is_write for a in func._schema.arguments)
        ):
            return
        leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
        values = []
        for x in leaves:
            if isinstance(x, FakeTensor):
                if x not in self.host_values:
                    return
                x = self.host_values[x]
            elif isinstance(x, torch.device) or (isinstance(x, str) and x.startswith("cuda")):
                x = torch.device("cpu")
            values.append(x)
        a, k = torch.utils._pytree.tree_unflatten(values, spec)
        with unset_fake_temporarily():
            self.host_values[outs[0]] = func(*a, **k)


def _caller() -> str:
    """' at file:line' of the innermost frame that is neither torch's nor this file's (where a violation came from)."""
    for frame in reversed(traceback.extract_stack()):
        if "/torch/" not in frame.filename and frame.filename != __file__ and "contextlib" not in frame.filename:
            return f" at {frame.filename}:{frame.lineno}"
    return ""


def _on_the_host(name: str, args, kwargs) -> bool:
    """An operator on real CPU tensors only (no fake one) that leaves its result on the CPU."""
    tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    if not tensors or any(isinstance(t, FakeTensor) or t.device.type != "cpu" for t in tensors):
        return False
    if name in COPY_OPS:
        return _copy_ends(name, args, kwargs)[1].type == "cpu"
    return kwargs.get("device") is None or torch.device(kwargs["device"]).type == "cpu"


# ------------------------------------------------------------------ backward without the autograd engine
def reachable(roots) -> tuple[set[int], list[torch.Tensor]]:
    """(ids of the autograd nodes, the leaves) reachable from the tensors `roots`, through `next_functions`."""
    leaves = [t for t in roots if t.grad_fn is None and t.requires_grad]
    nodes: set[int] = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in nodes:
            continue
        nodes.add(id(node))
        variable = getattr(node, "variable", None)  # AccumulateGrad: the leaf it fills
        if variable is not None:
            leaves.append(variable)
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return nodes, leaves


def _tuple(x) -> tuple:
    return (x,) if isinstance(x, torch.Tensor) else tuple(x)


def _is_fake(tensors) -> bool:
    return any(isinstance(t, FakeTensor) for t in tensors)


def _needs_grad(tensors) -> None:
    for i, t in enumerate(tensors):
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")


@contextlib.contextmanager
def fake_backward() -> Iterator[None]:
    """`Tensor.backward`, `torch.autograd.backward` and `torch.autograd.grad` on fake tensors: a zero gradient for
    every leaf reachable from the outputs (the autograd engine needs a real device). Real tensors run as ever."""
    real_backward, real_tensor_backward, real_grad = torch.autograd.backward, torch.Tensor.backward, torch.autograd.grad

    def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None, inputs=None):
        roots = _tuple(tensors)
        if not _is_fake(roots):
            return real_backward(tensors, grad_tensors, retain_graph, create_graph, grad_variables, inputs)
        _needs_grad(roots)
        wanted = None if inputs is None else {id(t) for t in _tuple(inputs)}
        for leaf in reachable(roots)[1]:
            if (wanted is None or id(leaf) in wanted) and leaf.grad is None:
                leaf.grad = torch.zeros_like(leaf)
        return None

    def tensor_backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        if not isinstance(self, FakeTensor):
            return real_tensor_backward(self, gradient, retain_graph, create_graph, inputs)
        return backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    @functools.wraps(real_grad)
    def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, *args, **kwargs):
        outs, ins = _tuple(outputs), _tuple(inputs)
        if not _is_fake(outs):
            return real_grad(outputs, inputs, grad_outputs, retain_graph, create_graph, *args, **kwargs)
        _needs_grad(outs)
        nodes, leaves = reachable(outs)
        leaf_ids = {id(t) for t in leaves}
        result = []
        for t in ins:
            used = id(t) in leaf_ids if t.grad_fn is None else id(t.grad_fn) in nodes
            if not used:
                if not kwargs.get("allow_unused") and not kwargs.get("materialize_grads"):
                    raise RuntimeError(
                        "One of the differentiated Tensors appears to not have been used in the graph. "
                        "Set allow_unused=True if this is the desired behavior."
                    )
                result.append(torch.zeros_like(t) if kwargs.get("materialize_grads") else None)
            else:  # with create_graph the gradient depends on the input, as a real one would
                result.append(t * 0 if create_graph else torch.zeros_like(t))
        return tuple(result)

    torch.autograd.backward, torch.Tensor.backward, torch.autograd.grad = backward, tensor_backward, grad
    try:
        yield
    finally:
        torch.autograd.backward, torch.Tensor.backward, torch.autograd.grad = (
            real_backward,
            real_tensor_backward,
            real_grad,
        )


# ------------------------------------------------------------------ the rehearsal
@dataclass
class Rehearsal:
    """The fake CUDA session: windows to guard, and stand-ins for host reads of fake values outside them."""

    mode: FakeTensorMode
    guard: DeviceGuard
    device: torch.device = field(default_factory=lambda: torch.device("cuda"))

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[None]:
        """Guard everything run inside: a violation is a `DeviceGuardError`, whoever found it first."""
        outer, self.guard.window = self.guard.window, name
        real_numpy = torch.Tensor.numpy

        def numpy(t, *args, **kwargs):
            if isinstance(t, FakeTensor) and _on_device(t):
                self.guard.fail(Violation(name, "host read", "Tensor.numpy", _describe(t)))
            return real_numpy(t, *args, **kwargs)

        torch.Tensor.numpy = numpy  # type: ignore[method-assign]
        try:
            yield
        except (DataDependentOutputException, DynamicOutputShapeException) as err:
            raise DeviceGuardError(f"the CUDA rehearsal refused a host read in {name!r}: {err}") from err
        except FakeTensorDeviceMismatchError as err:
            raise DeviceGuardError(f"the CUDA rehearsal refused a device mix in {name!r}: {err}") from err
        finally:
            torch.Tensor.numpy = real_numpy  # type: ignore[method-assign]
            self.guard.window = outer

    def guarded(self, fn: Callable, window: str) -> Callable:
        """`fn`, each call of it run in the window `window`."""

        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            with self.window(window):
                return fn(*args, **kwargs)

        return guarded

    def ops(self, window: str) -> Counter[str]:
        """The operators run in `window` so far, by name."""
        return Counter({name: n for (w, name), n in self.guard.ops.items() if w == window})

    @contextlib.contextmanager
    def answering(self, answer: Callable[[torch.Tensor], object]) -> Iterator[None]:
        """A host read of a fake value (which has none), outside the windows or tolerated, gets `answer(tensor)`."""
        outer, self.guard.answer = self.guard.answer, answer
        try:
            yield
        finally:
            self.guard.answer = outer


@contextlib.contextmanager
def replacing_module_tensors() -> Iterator[None]:
    """`Module._apply` (`.to`, `.double`, `.to_empty`, ...) puts new parameters and buffers in the module rather
    than swapping tensors in place: torch swaps a fake tensor's contents, and refuses to while the fake mode's
    memo holds a weak reference to it, so `module.to('cuda')` could not run under FakeTensorMode."""
    real_apply = nn.Module._apply

    def apply(self, fn, recurse=True):
        if recurse:
            for child in self.children():
                child._apply(fn)
        with torch.no_grad():
            for key, p in self._parameters.items():
                if p is not None:
                    new = nn.Parameter(fn(p), requires_grad=p.requires_grad)
                    if p.grad is not None:
                        new.grad = fn(p.grad)
                    self._parameters[key] = new
            for key, b in self._buffers.items():
                if b is not None:
                    self._buffers[key] = fn(b)
        return self

    nn.Module._apply = apply  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module._apply = real_apply  # type: ignore[method-assign]


@contextlib.contextmanager
def bf16_autocast_on_fake_cuda() -> Iterator[None]:
    """Let `torch.autocast('cuda', bfloat16)` believe a bf16-capable GPU is there (it disables itself otherwise)."""
    import torch.cuda.amp.common as amp_common

    saved = amp_common.amp_definitely_not_available, torch.cuda.is_bf16_supported
    amp_common.amp_definitely_not_available = lambda: False
    torch.cuda.is_bf16_supported = lambda *a, **k: True  # type: ignore[assignment]
    try:
        yield
    finally:
        amp_common.amp_definitely_not_available, torch.cuda.is_bf16_supported = saved  # type: ignore[assignment]


@contextlib.contextmanager
def fake_cuda(tolerate: Callable[[Violation], bool] | None = None) -> Iterator[Rehearsal]:
    """A `Rehearsal`: FakeTensorMode with the guard above it and the fake backward, for one test. A refusal is
    raised anew once the mode is left, without the frames of torch's dispatch (its message says where it was)."""
    refused = None
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode, fake_backward(), replacing_module_tensors():
            guard = DeviceGuard(tolerate)
            with guard:
                yield Rehearsal(mode, guard)
    except DeviceGuardError as err:
        refused = str(err)
    if refused is not None:
        raise DeviceGuardError(refused)
