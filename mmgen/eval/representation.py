"""Latent linear probes, the representation metric of the MoPoE (Sutter et al. 2021) and MVTCAE (Hwang et al.
2021) papers: how well a linear classifier reads the class off the latent representation of each subset of
modalities.

For every non-empty subset S of the modalities not in ``exclude``: a logistic regression is fitted to the
posterior means E q(z | x_S) of ``n_train`` training examples and scored by its accuracy on the posterior
means of every test example. ``"latent probe"[k]`` averages the subsets of size k.

As the official code does it (thomassutter/MoPoE, ``eval_metrics/representation.py``): one scikit-learn
``LogisticRegression(random_state=0, solver='lbfgs', multi_class='auto', max_iter=1000)`` per subset
(line 130; ``multi_class`` is gone from scikit-learn, whose lbfgs is multinomial by itself), fitted to the
means (``lr_subsets[key][0]``, lines 48 and 87) of ``--num_training_samples_lr`` = 500 training examples
(``utils/BaseFlags.py`` line 74), the same examples for every subset (lines 50-56), scored by accuracy on the
test split. Where this departs: the 500 are drawn without replacement from a seeded permutation (theirs:
``np.random.randint``, unseeded, with replacement); the accuracy is over every test example (theirs: a mean of
per-batch accuracies over full batches of 256, the last partial batch dropped); ``random_state`` is ``seed``
(lbfgs draws nothing, so it changes nothing); and q(z | x_S) is the model's own posterior given S, which for
MoPoE is the mixture over the subsets of S (theirs: the product of experts of S alone).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mmgen.errors import MmgenError
from mmgen.model.posthoc import encode_means
from mmgen.model.presence import Presence, having
from mmgen.plugin.model import Model

N_TRAIN = 500  # MoPoE's --num_training_samples_lr
Prepare = Callable[[dict[str, Tensor]], dict[str, Tensor]]  # stored examples -> model inputs, (N, *event) each
CLASSIFIER = {"solver": "lbfgs", "C": 1.0, "max_iter": 1000}  # MoPoE's, C being scikit-learn's default


def probe_subsets(names: list[str], exclude: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``names`` without ``exclude``, by size, each in the order of ``names``."""
    kept = [n for n in names if n not in exclude]
    return [s for k in range(1, len(kept) + 1) for s in itertools.combinations(kept, k)]


def latent_probe_report(model: Model, train_inputs: Mapping[str, Tensor], train_labels: Tensor,
                        test_inputs: Mapping[str, Tensor], test_labels: Tensor,
                        exclude: set[str] | frozenset[str] = frozenset(), n_train: int = N_TRAIN,
                        present_train: Presence | None = None, present_test: Presence | None = None,
                        seed: int = 0, batch_size: int = 1000, prepare_train: Prepare | None = None) -> dict[str, Any]:
    """``{"latent probe": {k: mean}, "latent probe per subset": {"m0,m1": accuracy}, "latent probe settings":
    {...}}`` for ``eval.json``.

    ``*_inputs``: prepared examples ``{name: (N, *event)}`` (``prepare_fixed``), ``*_labels``: their classes
    ``(N,)``; ``exclude``: modalities left out of every subset (one that holds the class itself). A subset is
    fitted and scored only on the examples that have all of it (``present_*``); one that no training or no test
    example has is left out. The same ``seed`` gives the same numbers. ``prepare_train``: when given,
    ``train_inputs`` are the stored split and only the examples drawn are prepared, by it (for example
    ``lambda raw: prepare_fixed(model.modalities, raw, seed, device)``): a whole training split prepared can
    take gigabytes (PolyMNIST's, 2.8 GB of float32).
    """
    subsets = checked_subsets(model, train_labels, test_labels, exclude, n_train)
    model.eval()
    n_test = test_labels.shape[0]
    rows = training_rows(train_labels.shape[0], subsets, n_train, present_train, seed)  # {subset: (n,) indices}
    used = torch.unique(torch.cat(list(rows.values())))  # (U,) sorted: the training examples any subset uses
    names = [m for m in model.names if any(m in s for s in subsets)]
    train_used = _pick(train_inputs, names, used)  # {name: (U, *event)}
    if prepare_train is not None and used.numel():
        train_used = prepare_train(train_used)
    labels_used = train_labels.cpu()[used]  # (U,)
    per_subset: dict[str, float] = {}
    examples: dict[str, dict[str, int]] = {}
    not_converged: list[str] = []
    for subset in subsets:
        at = torch.searchsorted(used, rows[subset])  # (n,) positions in ``used``
        keep = having(present_test, list(subset), n_test)  # (N_test,) bool
        if at.numel() == 0 or not keep.any():
            continue
        train_z = encode_means(model, _pick(train_used, subset, at), batch_size)  # (n, L)
        test_z = encode_means(model, _pick(test_inputs, subset, keep), batch_size)  # (N_kept, L)
        name = ",".join(subset)
        per_subset[name], converged = probe_accuracy(train_z, labels_used[at], test_z, test_labels.cpu()[keep], seed)
        examples[name] = {"train": at.numel(), "test": int(keep.sum())}
        if not converged:
            not_converged.append(name)
    settings = {
        "classifier": "scikit-learn LogisticRegression(" + ", ".join(f"{k}={v!r}" for k, v in CLASSIFIER.items())
                      + "), fitted to posterior means E q(z | subset) of the training split, scored on the test split",
        "n_train": n_train, "n_test": n_test, "chance": chance_accuracy(test_labels), "seed": seed,
        "excluded": sorted(exclude), "subsets": len(per_subset), "examples": examples, "not converged": not_converged,
    }
    return {"latent probe": means_by_size(per_subset), "latent probe per subset": per_subset,
            "latent probe settings": settings}


def checked_subsets(model: Model, train_labels: Tensor, test_labels: Tensor, exclude: set[str] | frozenset[str],
                    n_train: int) -> list[tuple[str, ...]]:
    """The subsets to probe, after refusing what cannot be probed, each in one line."""
    if train_labels.dim() != 1 or test_labels.dim() != 1:
        raise MmgenError(f"the latent probe reads one class per example: labels (N,), got "
                         f"{tuple(train_labels.shape)} and {tuple(test_labels.shape)}")
    if n_train < 1:
        raise MmgenError(f"the latent probe's n_train is {n_train}: it must be at least 1")
    subsets = probe_subsets(model.names, exclude)
    if not subsets:
        raise MmgenError(f"the latent probe has no modality to read: all of {', '.join(model.names)} are excluded")
    return subsets


def training_rows(n: int, subsets: list[tuple[str, ...]], n_train: int, present: Presence | None,
                  seed: int) -> dict[tuple[str, ...], Tensor]:
    """The training examples each subset is fitted to: the first ``n_train`` that have it in one seeded order of
    the ``n`` examples. With every modality present, every subset gets the same ones, as in MoPoE."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (n,)
    return {s: order[having(present, list(s), n)[order]][:n_train] for s in subsets}


def means_by_size(per_subset: dict[str, float]) -> dict[str, float]:
    """``{"k": the mean over the subsets of k modalities}`` of accuracies keyed ``"m0,m1"``."""
    by_size: dict[int, list[float]] = {}
    for name, accuracy in per_subset.items():
        by_size.setdefault(name.count(",") + 1, []).append(accuracy)
    return {str(k): sum(v) / len(v) for k, v in sorted(by_size.items())}


def probe_accuracy(train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor,
                   seed: int = 0) -> tuple[float, bool]:
    """(test accuracy, whether lbfgs converged) of a logistic regression fitted to ``train_z`` ``(n, L)`` with
    classes ``train_y`` ``(n,)``. Training examples of a single class make a classifier that always says it."""
    from sklearn.exceptions import ConvergenceWarning  # lazily: scikit-learn takes a while to import
    from sklearn.linear_model import LogisticRegression

    x_train, x_test = (z.detach().to("cpu", torch.float64).numpy() for z in (train_z, test_z))
    y_train, y_test = train_y.numpy(), test_y.numpy()
    if len(set(y_train.tolist())) < 2:
        return float((y_test == y_train[0]).mean()), True
    classifier = LogisticRegression(random_state=seed, **CLASSIFIER)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(x_train, y_train)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float((classifier.predict(x_test) == y_test).mean()), converged


def chance_accuracy(labels: Tensor) -> float:
    """The accuracy of always answering the commonest class of ``labels`` ``(N,)``."""
    if labels.numel() == 0:
        return 0.0
    return float(torch.unique(labels.cpu(), return_counts=True)[1].max()) / labels.numel()


def _pick(inputs: Mapping[str, Tensor], names: Sequence[str], index: Tensor) -> dict[str, Tensor]:
    """The modalities ``names`` at ``index`` (positions or a bool mask, on any device)."""
    return {m: inputs[m][index.to(inputs[m].device)] for m in names}
