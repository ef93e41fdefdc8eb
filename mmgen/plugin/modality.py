"""The Modality interface: encoder -> Gaussian expert, decoder -> likelihood, and its own data I/O.

A modality plugin subclasses :class:`Modality` and sets ``Config`` to a pydantic model that
subclasses :class:`ModalityConfig`. Shapes: ``B`` batch, ``D`` latent size, ``*event`` the shape
of one example of this modality (``(1, 28, 28)`` for an MNIST image, ``()`` for a label).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent

from mmgen.config import ModalityConfig


@dataclass(frozen=True)
class ClassSpace:
    """The classes a modality reads (``classes_of``) or makes (``examples_of``), and their ground truth.

    ``field`` is the data set field that holds each example's class in this space; None means the
    data set's own ``class_field`` (for MNIST, the digit). Cross-modal accuracy scores a modality
    against its field, and coherence pairs only modalities whose spaces are the same field.
    """

    size: int  # number of classes
    field: str | None = None

    def resolved(self, class_field: str | None) -> ClassSpace | None:
        """This space with ``field`` filled in from the data set's class field; None when there is none."""
        field = self.field or class_field
        return None if field is None else ClassSpace(self.size, field)

    def describe(self) -> str:
        return f"{self.size} classes of field {self.field!r}" if self.field else f"{self.size} classes"


class Modality(nn.Module, ABC):
    """One modality: ``encode`` gives q(z|x_m)'s mean and log-variance, ``decode`` gives likelihood params."""

    Config: ClassVar[type[ModalityConfig]] = ModalityConfig

    def __init__(self, name: str, config: ModalityConfig, latent_dim: int, decode_dim: int | None = None):
        super().__init__()
        self.name = name
        self.config = config
        self.latent_dim = latent_dim  # the expert's width: encode gives a Gaussian over this many dimensions
        # The width of the latents decode reads. The model family sets both: equal for one shared latent,
        # the shared plus this modality's private part where a family has private latents.
        self.decode_dim = latent_dim if decode_dim is None else decode_dim

    # ---- model -------------------------------------------------------------------------
    @abstractmethod
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Prepared batch ``(B, *event)`` -> expert ``(mu, logvar)``, each ``(B, latent_dim)``."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(*S, decode_dim)`` -> likelihood parameters ``(*S, *params)`` (logits for a Bernoulli or
        a categorical)."""

    @abstractmethod
    def likelihood(self, params: Tensor) -> Distribution:
        """Parameters ``(*S, *params)`` -> p(x|z) with ``batch_shape == S`` and ``event_shape == event``."""

    def log_likelihood(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) summed over the event: ``(*S, *params)`` with ``x`` broadcastable -> ``(*S,)``."""
        return self.likelihood(params).log_prob(x)

    def mean(self, params: Tensor) -> Tensor:
        """The likelihood's mean, the thing to show a person: pixel intensities, class probabilities.

        A categorical has no mean in torch (its classes are not numbers): its probabilities stand in.
        """
        dist = self.likelihood(params)
        base = dist.base_dist if isinstance(dist, Independent) else dist
        return base.probs if isinstance(base, Categorical) else dist.mean

    # ---- data --------------------------------------------------------------------------
    def prepare(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Stored batch (for example uint8 pixels) -> model input (for example float in [0, 1]).

        Called once per training step on a whole batch on the device, and once on the CPU for
        fixed inputs (validation, evaluation, ``--given``) so that every device sees the same draw:
        it must not use the module's parameters or buffers. ``generator`` (on the tensor's device)
        drives any randomness such as dynamic binarization. The default is the identity.
        """
        return raw

    @abstractmethod
    def parse_given(self, value: Any) -> Tensor:
        """A user's value -> stored examples ``(N, *event)``: a CLI string, a path or an int is one
        example (N = 1); a tensor is one example ``(*event)`` or a batch ``(N, *event)``.

        Raises :class:`mmgen.GivenError` with a one-line reason when the value is unusable, a
        tensor of the wrong shape or dtype included.
        """

    @property
    def num_classes(self) -> int | None:
        """For a class-label modality, the number of classes (enables accuracy and coherence); else None."""
        return None

    def class_space(self) -> ClassSpace | None:
        """The classes this modality reads and makes; None when it has none of its own (an image: a judge
        trained on the data set's class field reads it).

        The default: a class-label modality (``num_classes`` set) holds its class as its data, so its
        ground truth is its own field. A modality that reads the data set's classes some other way
        (a text spelling the digit's name) returns ``ClassSpace(size)``, with ``field`` None. A
        modality that reads classes but declares no space is left out of cross-modal metrics.
        """
        return ClassSpace(self.num_classes, self.name) if self.num_classes else None

    def classes_of(self, mean: Tensor) -> Tensor | None:
        """Decoded means ``(N, *event)`` -> the class each one shows, ``(N,)`` long, -1 where none is readable.

        Cross-modal accuracy and coherence read generated labels or texts this way. The default
        reads a class-label modality (``num_classes`` set) by its most probable class; None means
        this modality cannot read its own class (images are judged by a classifier instead).
        """
        return mean.argmax(-1) if self.num_classes else None

    def tokens_of(self, mean: Tensor) -> Tensor | None:
        """Decoded means ``(N, *event)`` of a sequence modality -> its most probable tokens ``(N, L)`` long, in
        the index space of its stored data, or None (the default: not a sequence).

        Cross-modal evaluation then scores the tokens decoded from every other modality against the
        stored ones, position by position (MultiMNIST's image -> digits accuracy).
        """
        return None

    def examples_of(self, classes: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Class indices ``(N,)`` -> stored examples ``(N, *event)`` that show them, or None (the default).

        A label is its class (the default for a class-label modality); a text spells its class
        name. Coherence conditions on these.
        """
        return classes.long() if self.num_classes else None

    def evaluation_note(self) -> str | None:
        """How this modality's log-likelihood is scored, for the evaluation report (a convention, stated)."""
        return None

    def to_image(self, mean: Tensor) -> Tensor | None:
        """Decoded means ``(N, *event)`` -> images ``(N, C, H, W)`` in [0, 1] for a grid, or None."""
        return None

    def describe(self, mean: Tensor) -> str | None:
        """Decoded means ``(N, *event)`` -> a short human-readable summary, or None."""
        return None
