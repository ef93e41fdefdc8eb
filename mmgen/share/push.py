"""``mmgen push RUN_OR_EXPORT REPO_ID``: an export into a model repository on the Hugging Face Hub, through
huggingface_hub's ``HfApi`` (``create_repo``, then ``upload_folder``), never hand-written HTTP. A run
(a folder without export.json) is exported into a temporary folder first, its card naming the repository;
an export is loaded first, so that a broken one is refused before anything is sent.

Not exercised against the Hub: the machines this was written on have no network. The tests hand it a
stand-in for ``HfApi`` and check the folder and repository id it receives.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mmgen.errors import MmgenError
from mmgen.run.exported import FILES, MANIFEST
from mmgen.run.hub import huggingface_hub, local_folder
from mmgen.run.loaded import Run
from mmgen.share.export import export_run

LOGIN = "log in with `hf auth login`, or set HF_TOKEN to a token that may write to it"


def push(source: str | Path, repo_id: str, private: bool = False, which: str = "best", device: str = "cpu",
         message: str | None = None, api: Any = None) -> str:
    """Upload ``source`` (an export, or a run exported on the way) to the Hub model ``repo_id``, made if it is
    not there; returns what the Hub answered (the commit's URL). ``api``: an ``HfApi`` (default: a new one)."""
    hub = huggingface_hub("mmgen push")
    checked_repo_id(repo_id)
    api = api if api is not None else hub.HfApi()
    folder = local_folder(source)
    if (folder / MANIFEST).is_file():
        run = Run.load(folder, device=device, which=which)  # refuses a tampered export, and says why
        return upload(api, folder, repo_id, private, message or f"mmgen export of {run.recipe.name}")
    with tempfile.TemporaryDirectory(prefix="mmgen-push-") as tmp:
        export = export_run(source, Path(tmp) / "export", which=which, device=device, repo_id=repo_id)
        name = Run.load(export, device=device).recipe.name
        return upload(api, export, repo_id, private, message or f"mmgen export of {name}")


def checked_repo_id(repo_id: str) -> None:
    """``ORG/NAME`` as the Hub names a repository (huggingface_hub's own rule)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("it must be ORG/NAME")
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise MmgenError(f"REPO_ID {repo_id!r} is not a Hub repository id: {' '.join(str(exc).split())[:200]}",
                         hint="name it ORG/NAME, for example my-lab/mnist-mvae")


def upload(api: Any, folder: Path, repo_id: str, private: bool, message: str) -> str:
    """create_repo (if it is not there) and upload_folder: only an export's files go up."""
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message=message, allow_patterns=list(FILES))
    except Exception as exc:
        explained = explain(exc, repo_id)
        if explained is None:
            raise
        raise explained from exc
    return str(getattr(info, "commit_url", None) or info)


def explain(exc: Exception, repo_id: str) -> MmgenError | None:
    """huggingface_hub's error while pushing as one line with what to do; None for any other."""
    from huggingface_hub import errors

    why = f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return MmgenError(f"cannot push to {repo_id}: HF_HUB_OFFLINE=1 is set", hint="unset HF_HUB_OFFLINE on a "
                          "machine with network; or copy the export folder to one")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return MmgenError(f"the Hub refused the push to {repo_id}: {why}",
                          hint=LOGIN if status in (401, 403) else "check REPO_ID, then try again later")
    if isinstance(exc, errors.LocalTokenNotFoundError):
        return MmgenError(f"cannot push to {repo_id}: no Hugging Face token", hint=LOGIN)
    # huggingface_hub speaks HTTP through httpx (httpx2 in its 2.x): a connection that fails is that library's.
    if isinstance(exc, OSError) or type(exc).__module__.partition(".")[0] in ("httpx", "httpx2"):
        return MmgenError(f"cannot reach the Hub to push to {repo_id}: {why}",
                          hint="connect to the network and run again")
    return None
