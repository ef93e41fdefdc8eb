"""``[model]`` of the DMVAE family (Lee & Pavlovic 2021): the private latents and β."""

from __future__ import annotations

from pydantic import Field, field_validator

from mmgen import ModelConfig


class DMVAEConfig(ModelConfig):
    """``latent_dim`` is the shared w (D); ``private_dim`` each modality's own u_m (P_m)."""

    kind: str = Field("dmvae", description="Registered model family.")
    private_dim: int | dict[str, int] = Field(
        4,
        description="P_m: the width of each modality's private latent u_m. An int > 0 gives every modality that "
        "width; a table gives each its own, e.g. {image = 4, label = 0} (the authors' MNIST-SVHN code gives MNIST 1 "
        "and SVHN 4), and must name every modality. 0: no private latent, for a modality without a style such as a "
        "class label, whose content must then live in the shared w (a label's private u would carry the class and "
        "leave cross-modal generation at chance). Not 0 for every modality: without any private latent DMVAE is "
        "a product-of-experts VAE with cross-reconstruction terms, not a private-shared model.",
    )
    beta: float = Field(
        1.0, gt=0,
        description="β: the weight of every KL term, shared and private (1 in the authors' code, where their β-TC "
        "weights all default to 1). The trainer's warm-up (train.anneal_epochs) multiplies it.",
    )

    @field_validator("private_dim", mode="before")
    @classmethod
    def _widths(cls, value: object) -> object:
        """An int > 0 or a table of ints ≥ 0, not all 0, each problem one line (the union would give two); the
        table's names are checked against the modalities by ``DMVAE.check``, which knows them."""
        def whole(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not (whole(value) or (isinstance(value, dict) and all(whole(v) for v in value.values()))):
            raise ValueError("must be an int > 0 or a table of modality = int, e.g. {image = 4, label = 0}")
        if whole(value) and value <= 0:
            raise ValueError("must be > 0; give a table such as {image = 4, label = 0} for no private latent on "
                             "some modalities")
        if isinstance(value, dict) and any(width < 0 for width in value.values()):
            raise ValueError("every width must be ≥ 0 (0: no private latent)")
        if isinstance(value, dict) and value and not any(value.values()):
            raise ValueError("at least one modality needs a private latent; with none DMVAE is not private-shared")
        return value

    def private_width(self, name: str) -> int:
        """P_m of modality ``name``: the int, or its entry in the table."""
        if isinstance(self.private_dim, int):
            return self.private_dim
        if name not in self.private_dim:
            raise ValueError(missing_width(name))
        return self.private_dim[name]


def width_problems(config: DMVAEConfig, names: list[str]) -> list[str]:
    """One ``model.private_dim: ...`` line per name of the table that is not a modality and per modality it
    lacks; none for an int."""
    table = config.private_dim
    if isinstance(table, int):
        return []
    unknown = [f"model.private_dim: {n!r} is not a modality of this recipe (modalities: {', '.join(names)})"
               for n in table if n not in names]
    return unknown + [missing_width(n) for n in names if n not in table]


def missing_width(name: str) -> str:
    return (f"model.private_dim: no width for modality {name!r}; a table needs one for every modality (0: no private "
            "latent)")
