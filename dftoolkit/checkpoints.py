"""Safe checkpoint loading: weights-only unpickling and state dicts checked against a module.

:func:`load_weights` reads a file with ``torch.load(weights_only=True)``, which rebuilds only
tensors, containers and plain values: a pickle that names any other global (a function to call, a
class to build) is refused before anything runs. :func:`fit_state_dict` compares a state dict's
names and shapes with a module's and says what differs before loading it. Both raise
:class:`CheckpointError` (a :class:`ValueError`), whose message names the file.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dftoolkit.errors import DftoolkitError

__all__ = ["CheckpointError", "fit_state_dict", "load_weights"]

_LISTED = 5  # names listed per kind of difference


class CheckpointError(DftoolkitError, ValueError):
    """A checkpoint file that cannot be read safely or does not fit the architecture."""


def _refusal_reason(err: Exception) -> str:
    """The reason in torch's weights-only refusal, without its advice to load the file unsafely."""
    advice = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = (line.strip() for line in str(err).splitlines())
    return " ".join(line for line in lines if line and not line.startswith(advice)) or type(err).__name__


def load_weights(
    path: str | os.PathLike[str],
    *,
    what: str,
    hint: str,
    map_location: str | torch.device = "cpu",
) -> Any:
    """The object saved in ``path``, read with ``torch.load(weights_only=True)`` onto ``map_location``.

    Args:
        path: the checkpoint file.
        what: what the file is, for messages (e.g. ``"FOMM checkpoint"``).
        hint: what to do about it (where to get the file); ends every message.
        map_location: device the tensors are loaded to.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it and gives ``hint``).
        CheckpointError: torch refused the pickle (it may run code when unpickled; the reason is
            torch's, without its advice to retry unsafely), or the file is corrupt or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}; {hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} is not a plain weights file ({what}): torch.load(weights_only=True) refused it "
            f"({_refusal_reason(err)}); it may run code when unpickled, so it is not loaded; {hint}"
        ) from err
    except Exception as err:  # corrupt archives raise RuntimeError, truncated pickles EOFError, ...
        reason = str(err).strip() or type(err).__name__
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint ({what}): {reason}; {hint}"
        ) from err


def _listed(count_and_kind: str, items: list[str]) -> str:
    more = f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return f"{count_and_kind}: {', '.join(items[:_LISTED])}{more}"


def _strip(name: str, prefixes: Sequence[str]) -> str:
    """``name`` without the first of ``prefixes`` it starts with."""
    return next((name.removeprefix(p) for p in prefixes if name.startswith(p)), name)


def fit_state_dict(
    module: nn.Module,
    state: Any,
    *,
    where: str,
    strip_prefix: str | Sequence[str] | None = "module.",
    optional: tuple[str, ...] = ("num_batches_tracked",),
    dropped: tuple[str, ...] = (),
    hint: str = "",
) -> None:
    """Load ``state`` into ``module`` after checking that its names and shapes are the module's.

    Args:
        module: the network to load into (its :meth:`~torch.nn.Module.state_dict` is the reference).
        state: a mapping of names to tensors (e.g. what :func:`load_weights` returned).
        where: what is loaded, for messages (e.g. ``"ckpt.pth: kp_detector"``).
        strip_prefix: removed from the start of every name that has it (``"module."``: what
            ``DataParallel`` adds); several: the first (longest) that a name starts with, e.g.
            ``("module.base_model.", "module.")``; None keeps names as they are.
        optional: suffixes of the module's names that ``state`` may lack (the module's own values
            are kept), e.g. the batch-norm counter that old PyTorch did not save.
        dropped: prefixes of ``state``'s names (after stripping) that are left out on purpose, e.g.
            a pre-training head the architecture does not have; only documented heads belong here.
        hint: appended to a mismatch message (e.g. the format the file should have).

    Raises:
        CheckpointError: ``state`` is not a mapping of str to tensors, or names are missing,
            unexpected or of another shape (each listed with its count, up to 5 names).
    """
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        found = type(state).__name__
        raise CheckpointError(f"{where}: expected a state dict (names -> tensors), got {found}")
    prefixes = sorted([strip_prefix] if isinstance(strip_prefix, str) else strip_prefix or (), key=len)[::-1]
    state = {_strip(k, prefixes): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(dropped)}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = [
        _listed(f"{len(items)} {kind}", items)
        for kind, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if items
    ]
    if problems:
        message = f"{where} does not fit the architecture: {'; '.join(problems)}. {hint}"
        raise CheckpointError(message.rstrip())
    module.load_state_dict({**own, **state})
