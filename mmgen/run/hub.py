"""Models on the Hugging Face Hub: ``hf://ORG/NAME[@REVISION]`` names an export there. It is downloaded
into the Hub's own cache (``huggingface_hub.snapshot_download``) and then loads as a local export; a
repository without export.json is refused, since nothing would hold its weights and recipe to what was exported.

huggingface_hub (the ``hub`` extra) does all the talking to the Hub and all the caching; it is imported
only when a run argument names the Hub, so a folder loads without it. Offline (``HF_HUB_OFFLINE=1``, or
no network) a model already in the cache loads; anything else is one line saying what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mmgen.errors import CheckpointError, MmgenError
from mmgen.plugin.discovery import mmgen_version
from mmgen.run.exported import FILES, MANIFEST

SCHEME = "hf://"
INSTALL = "pip install 'mmgen[hub]' (or pip install huggingface_hub)"
# "hf:/" too: typer hands RUN over as a Path, and a Path folds "hf://org/name" into "hf:/org/name".
_REFERENCE = re.compile(r"hf:/{1,2}(?P<repo>[^@]*)(?:@(?P<revision>.*))?", re.DOTALL)
_FORM = "a Hub model is named hf://ORG/NAME or hf://ORG/NAME@REVISION"


@dataclass(frozen=True)
class HubModel:
    """A model repository on the Hub, at a branch, tag or commit (None: its default branch)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{SCHEME}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def parse_reference(value: str | Path) -> HubModel | None:
    """``hf://ORG/NAME[@REVISION]`` -> a HubModel; anything else (a local path) -> None."""
    text = str(value)
    if not text.startswith("hf:/"):
        return None
    match = _REFERENCE.fullmatch(text)
    repo, revision = match["repo"].strip("/"), match["revision"]
    if repo.count("/") != 1 or not all(repo.split("/")) or revision == "":
        raise CheckpointError(f"{text}: not a Hub model", hint=_FORM)
    return HubModel(repo, revision)


def huggingface_hub(purpose: str) -> ModuleType:
    """The huggingface_hub package, or one line saying how to install it."""
    try:
        import huggingface_hub as hub  # optional: the `hub` extra
    except ImportError:
        raise MmgenError(f"{purpose} needs the huggingface_hub package, which is not installed", hint=INSTALL)
    return hub


def local_folder(run: str | Path) -> Path:
    """The folder a run argument names: a path as it is, a Hub model's folder in the Hub's cache."""
    model = parse_reference(run)
    return Path(run) if model is None else download(model)


def download(model: HubModel) -> Path:
    """The model's export in the Hub's cache, brought up to date there first when the Hub can be reached."""
    hub = huggingface_hub(f"loading {model}")
    try:
        folder = Path(hub.snapshot_download(model.repo_id, revision=model.revision, allow_patterns=list(FILES),
                                            library_name="mmgen", library_version=mmgen_version()))
    except Exception as exc:
        explained = explain(exc, model)
        if explained is None:
            raise
        raise explained from exc
    if not (folder / MANIFEST).is_file():  # without it, nothing holds the weights and recipe to what was exported
        raise CheckpointError(f"{model} is not an mmgen export: it has no {MANIFEST}",
                              hint="export a run with `mmgen export RUN DEST` and push it with `mmgen push`")
    return folder


def explain(exc: Exception, model: HubModel) -> MmgenError | None:
    """huggingface_hub's error as one line with what to do; None for one it does not raise on purpose."""
    from huggingface_hub import constants, errors

    cache = constants.HF_HUB_CACHE
    why = _one_line(exc)
    if isinstance(exc, errors.LocalEntryNotFoundError):
        where = f"{model} is not (or not completely) in the Hugging Face cache {cache}"
        if constants.HF_HUB_OFFLINE:
            return CheckpointError(f"{where}, and HF_HUB_OFFLINE=1 forbids downloading it",
                                   hint="download it once without HF_HUB_OFFLINE on a machine with network, or copy "
                                   "its export folder here and load that folder by its path")
        cause = _one_line(exc.__cause__) if exc.__cause__ is not None else why  # the connection's error
        return CheckpointError(f"{where}, and the Hub cannot be reached ({cause})",
                               hint="connect to the network and run again, or copy its export folder here and load "
                               "that folder by its path")
    if isinstance(exc, errors.RevisionNotFoundError):
        return CheckpointError(f"{model}: the Hub model {model.repo_id} has no revision {model.revision!r}",
                               hint="name a branch, tag or commit it has")
    if isinstance(exc, errors.RepositoryNotFoundError):  # also gated and private ones without a token
        return CheckpointError(f"{model}: no such model on the Hub, or it is private or gated",
                               hint="check the name; for a private model log in with `hf auth login` or set HF_TOKEN")
    if isinstance(exc, errors.HfHubHTTPError):
        return CheckpointError(f"{model}: the Hub refused the download: {why}", hint="try again later")
    if isinstance(exc, errors.HFValidationError):
        return CheckpointError(f"{model}: not a Hub model id: {why}", hint=_FORM)
    if isinstance(exc, OSError):  # the cache's disk: full, or not writable
        return CheckpointError(f"{model}: cannot download it into the Hugging Face cache {cache}: "
                               f"{exc.strerror or why}", hint="free some space, or set HF_HOME to a writable folder")
    return None


def _one_line(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"
