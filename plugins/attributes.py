"""Binary attributes, many at once: K independent Bernoullis (CelebA's 18 attributes in the MVAE paper).

Stored as uint8 ``(N, K)`` of 0 and 1. The encoder and decoder are MLPs; p(attributes | z) is a
product of K Bernoullis. ``--given attributes=Male,Smiling`` names the attributes that are on (the
others off); a tensor of K zeros and ones works too.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor
from torch.distributions import Bernoulli, Independent

from mmgen import GivenError, Modality, ModalityConfig, hookimpl
from mmgen_plugins.mlp import GaussianHead, mlp


class AttributesConfig(ModalityConfig):
    """K binary attributes with names."""

    names: list[str] = Field(min_length=1, description="The attributes, in the order the data stores them.")
    encoder_hidden: list[PositiveInt] = Field([512, 512], description="Hidden layer widths of the encoder MLP.")
    decoder_hidden: list[PositiveInt] = Field([512, 512], description="Hidden layer widths of the decoder MLP.")

    @model_validator(mode="after")
    def _unique(self) -> AttributesConfig:
        twice = sorted({n for n in self.names if self.names.count(n) > 1})
        if twice:
            raise ValueError(f"names {', '.join(map(repr, twice))} more than once")
        return self


class Attributes(Modality):
    Config = AttributesConfig
    config: AttributesConfig

    def __init__(self, name: str, config: AttributesConfig, latent_dim: int, decode_dim: int | None = None):
        super().__init__(name, config, latent_dim, decode_dim)
        K = len(config.names)
        self.encoder = mlp([K, *config.encoder_hidden], final_activation=True)
        self.head = GaussianHead(config.encoder_hidden[-1] if config.encoder_hidden else K, latent_dim)
        self.decoder = mlp([self.decode_dim, *config.decoder_hidden, K])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.encoder(x))  # (B, K) -> 2 x (B, D)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)  # (*S, D) -> logits (*S, K)

    def likelihood(self, params: Tensor) -> Independent:
        return Independent(Bernoulli(logits=params, validate_args=False), 1, validate_args=False)

    def prepare(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return raw.float()

    def parse_given(self, value: Any) -> Tensor:
        K, names = len(self.config.names), self.config.names
        if isinstance(value, Tensor):
            x = value.detach().cpu()
            if x.shape[-1:] != (K,) or x.dim() > 2 or not bool(((x == 0) | (x == 1)).all()):
                raise GivenError(f"{self.name}: expected {K} zeros and ones, or a batch (N, {K}), "
                                 f"got a tensor of shape {tuple(x.shape)}")
            return x.reshape(-1, K).to(torch.uint8)
        on = [n.strip() for n in str(value).split(",") if n.strip()]
        unknown = [n for n in on if n not in names]
        if unknown:
            raise GivenError(f"{self.name}={value}: unknown attribute(s) {', '.join(unknown)} "
                             f"(attributes: {', '.join(names)})")
        return torch.tensor([[n in on for n in names]], dtype=torch.uint8)

    def evaluation_note(self) -> str:
        return f"Bernoulli log-probability of {len(self.config.names)} binary attributes"

    def describe(self, mean: Tensor) -> str:
        probs = mean.reshape(-1, len(self.config.names)).mean(0)  # (K,) averaged over samples
        likely = [f"{n}:{float(p):.2f}" for n, p in zip(self.config.names, probs) if p >= 0.5]
        return f"{self.name}: {', '.join(likely) or 'none above 0.5'}"


@hookimpl
def register_modalities(register):
    register("attributes", Attributes)
