"""Input checks of the losses that need the values: labels, class ids and weights, probabilities.

Each check is a 0-d bool tensor that is True when the input is fine, formed on the input's device,
with what to say when it is not. ``report`` then acts as the losses' ``checks=`` option says:

* ``"sync"`` (the CPU default): every check in one stacked tensor, read by the host once; a
  failure raises ``ValueError`` with the offending values;
* ``"async"`` (the default elsewhere): ``torch._assert_async`` on the device, as
  ``F.cross_entropy`` checks its targets: nothing waits for the device, and a failure is a
  device-side error naming the problem (a ``RuntimeError`` on CPU);
* ``"off"``: no check (out-of-range labels then count as background of every row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

MODES = ("sync", "async", "off")


class Check(NamedTuple):
    """``fine``: 0-d bool tensor; ``problem``: the short description ``"async"`` reports;
    ``explain``: the full message, with values read back (only called once ``fine`` is False)."""

    fine: torch.Tensor
    problem: str
    explain: Callable[[], str]


def choose(name: str, checks: str | None, device: torch.device) -> str:
    """The ``checks=`` mode of a call: as given, or by default ``"sync"`` on CPU (a host read
    costs nothing there) and ``"async"`` on other devices."""
    if checks is None:
        return "sync" if device.type == "cpu" else "async"
    if checks not in MODES:
        raise ValueError(f"{name}: checks={checks!r} is not one of {', '.join(map(repr, MODES))}")
    return checks


def report(name: str, checks: str, found: Sequence[Check | None]) -> None:
    """Acts on the checks ``found`` (None entries are skipped) as the mode ``checks`` says."""
    found = [check for check in found if check is not None]
    if checks == "off" or not found:
        return
    if checks == "async":
        for check in found:
            torch._assert_async(check.fine, f"{name}: {check.problem}")
        return
    fine = torch.stack([check.fine for check in found]).tolist()
    for ok, check in zip(fine, found, strict=True):
        if not ok:
            raise ValueError(f"{name}: {check.explain()}")


def label_error(what: str, values, num_classes: int, ignore_index: int | None) -> str:
    return (
        f"{what} contain {values} outside [0, {num_classes})"
        + (f" that are not ignore_index={ignore_index}" if ignore_index is not None else "")
        + "; pass ignore_index for void pixels"
    )


def labels_in_range(
    labels: torch.Tensor, num_classes: int, ignore_index: int | None
) -> Check | None:
    """Integer labels lie in ``[0, num_classes)`` or are ``ignore_index`` (bool labels always do)."""
    if labels.dtype == torch.bool:
        return None
    # Compared with a Python int, a narrow tensor wraps it to its own type (256 as uint8 is 0),
    # so a bound the dtype cannot hold is settled here rather than compared: no label reaches a
    # num_classes above the dtype's max, and none equals an ignore_index outside its range. The
    # labels are never widened (an int64 copy is 8x a uint8 batch).
    info = torch.iinfo(labels.dtype)
    ok = labels >= 0 if info.min < 0 else torch.ones_like(labels, dtype=torch.bool)
    if num_classes <= info.max:
        ok &= labels < num_classes
    if ignore_index is not None and info.min <= ignore_index <= info.max:
        ok |= labels == ignore_index

    def explain():
        values = torch.unique(labels[~ok])[:8].tolist()
        return label_error("labels", values, num_classes, ignore_index)

    return Check(ok.all(), label_error("labels", "values", num_classes, ignore_index), explain)


def binary_targets(targets: torch.Tensor, ignore_index: int | None) -> Check:
    """Targets of any dtype are 0, 1 or ``ignore_index``."""
    ok = (targets == 0) | (targets == 1)
    if ignore_index is not None:
        ok |= targets == ignore_index
    expected = "0 or 1" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")

    def explain():
        values = torch.unique(targets[~ok])[:8].tolist()
        return f"targets contain {values}; expected {expected}"

    return Check(ok.all(), f"targets other than {expected}", explain)


def probabilities(low: torch.Tensor, high: torch.Tensor) -> Check:
    """Values whose smallest is ``low`` and largest ``high`` (0-d tensors) lie in [0, 1], up to a
    softmax's rounding."""
    low, high = low.detach(), high.detach()
    ok = (low >= -1e-5) & (high <= 1.0 + 1e-5)

    def explain():
        return (
            f"expected probabilities in [0, 1], got values in [{low.item():.4g}, "
            f"{high.item():.4g}]; for logits use LovaszSoftmaxLoss, which applies the softmax "
            "itself (or from_logits=True)"
        )

    return Check(ok, "expected probabilities in [0, 1]; for logits pass from_logits=True", explain)


def class_ids(
    classes: str | Sequence[int] | torch.Tensor, num_classes: int, device: torch.device, name: str
) -> tuple[torch.Tensor | None, bool, Check | None]:
    """``classes`` → (the candidate class ids on ``device``, or None for every class in order;
    whether only present ones count; the check of a tensor of ids: distinct ids in range). A
    Python list is checked here, and copied to the device once per call (the modules keep theirs
    as a buffer)."""
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            raise ValueError(f"{name}: classes={classes!r} is not one of 'present', 'all'")
        return None, classes == "present", None
    if isinstance(classes, torch.Tensor):
        if classes.dim() != 1 or classes.numel() == 0 or classes.is_floating_point():
            raise ValueError(
                f"{name}: classes of shape {tuple(classes.shape)} and dtype {classes.dtype}: "
                "expected a non-empty 1-d tensor of class ids"
            )
        ids = classes.to(device=device, dtype=torch.long)
        ordered = ids.sort().values
        ok = (ordered[0] >= 0) & (ordered[-1] < num_classes) & (ordered.diff() > 0).all()
        expected = f"distinct ids in [0, {num_classes})"
        return (
            ids,
            False,
            Check(
                ok,
                f"classes must be {expected}",
                lambda: f"classes={ids.tolist()} must be {expected}",
            ),
        )
    if not isinstance(classes, Sequence) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in classes
    ):
        raise ValueError(f"{name}: classes={classes!r} is not 'present', 'all' or a list of ids")
    if not classes or any(not 0 <= c < num_classes for c in classes):
        raise ValueError(
            f"{name}: classes={list(classes)} must be a non-empty list of ids in [0, {num_classes})"
        )
    return torch.tensor(sorted(set(classes)), device=device), False, None


def class_weights(
    weights: Sequence[float] | torch.Tensor | None,
    num_classes: int,
    device: torch.device,
    name: str,
) -> tuple[torch.Tensor | None, Check | None]:
    """``weights`` as a float64 tensor [C] on ``device`` (its shape checked here), and the check
    of its values: finite and non-negative."""
    if weights is None:
        return None, None
    weights = torch.as_tensor(weights, dtype=torch.float64, device=device)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"{name}: class_weights has shape {tuple(weights.shape)}, expected ({num_classes},): "
            "one weight per class"
        )
    ok = (torch.isfinite(weights) & (weights >= 0)).all()
    return weights, Check(
        ok,
        "class_weights must be finite and >= 0",
        lambda: f"class_weights must be finite and >= 0, got {weights.tolist()}",
    )
