"""``mmgen export RUN DEST``: a run (or an export, or a Hub model) into a self-contained folder that another
machine loads with ``mmgen.load_run(DEST)``, ``mmgen sample DEST`` and ``mmgen eval DEST``.

The layout, and what loading checks, are mmgen.run.exported's. Nothing in it is pickled: JSON,
safetensors, a PNG and Markdown. The folder is written under a temporary name beside DEST, loaded back
(the checks a receiver's mmgen makes), given its model card, and only then renamed to DEST, so a
failed export leaves nothing behind. An empty DEST that exists (``.``, the shell's own folder, among
them) is filled in place instead: written under a temporary name inside it, then its files moved up.

Nothing is invented: the plugins export.json lists are those the exported recipe names (not the
training machine's loggers), and a run without versions.json exports versions.json saying they are unknown.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

from mmgen.errors import CheckpointError, MmgenError
from mmgen.eval.pictures import showcase_png
from mmgen.plugin.discovery import mmgen_version
from mmgen.run.data_record import data_record_path
from mmgen.run.directory import RunDir
from mmgen.run.exported import (
    CARD,
    EVAL,
    MANIFEST,
    SAMPLES,
    UNKNOWN_VERSIONS,
    Manifest,
    Weights,
    digest,
    needs_of,
    recipe_record,
    shareable,
)
from mmgen.run.loaded import Run
from mmgen.share.card import model_card
from mmgen.storage.atomic import atomic_write_many, no_space
from mmgen.storage.tensors import read_metadata


def source_files(run: Run, which: str) -> dict[str, bytes]:
    """The files an export takes from its run: the chosen weights byte for byte, the recipe made shareable,
    the run's versions (or that they are unknown: never this machine's), and its curve, numbers and data
    record (``Dataset.record``, MNIST-SVHN's pairs) when it has them."""
    source = run.run_dir
    weights_path = source.weights(which)  # the file Run.load read: best falls back to last
    recipe = shareable(run.recipe.to_dict())
    versions = source.versions_file.read_bytes() if source.versions_file.is_file() else \
        (json.dumps(UNKNOWN_VERSIONS, indent=2) + "\n").encode()
    files = {weights_path.name: weights_path.read_bytes(), source.versions_file.name: versions,
             source.recipe_file.name: (json.dumps(recipe, indent=2) + "\n").encode()}
    for path in (source.metrics_file, source.path / EVAL, data_record_path(source.path)):  # the pairs it learnt from
        if path.is_file():
            files[path.name] = path.read_bytes()
    return files


def manifest_of(run: Run, staging: Path, weights_file: str) -> Manifest:
    """export.json for the recipe and weights as written into ``staging``: the plugins that recipe names, its
    model and modalities, the weights' bytes and the epoch in their header."""
    weights = (staging / weights_file).read_bytes()
    written = RunDir(staging)
    return Manifest(run=run.recipe.name, exported_by=mmgen_version(), needs=needs_of(written.recipe()),
                    recipe=recipe_record(written.read_recipe_data()),
                    weights=Weights(file=weights_file, chosen=Path(weights_file).stem, bytes=len(weights),
                                    epoch=int(read_metadata(staging / weights_file).get("epoch", 0)),
                                    sha256=digest(weights)))


def check_destination(dest: Path) -> None:
    """DEST is a new folder (or an empty one) whose parent can be made."""
    if dest.exists() and not dest.is_dir():
        raise MmgenError(f"{dest} is a file, not a folder to export into", hint="name a new folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise MmgenError(f"{dest} already exists and is not empty; not overwriting it",
                         hint="name a new folder, or delete that one")


def export_run(run: str | Path | None, dest: str | Path, which: str = "best", device: str = "cpu",
               repo_id: str | None = None) -> Path:
    """Export ``run`` (a run directory, an export, ``hf://ORG/NAME``; None: the newest run) into ``dest``.
    ``which``: best (by validation) or last weights. ``repo_id``: the Hub model the card's commands name."""
    dest = Path(dest).absolute()  # "." names the working folder, but has no name to stage beside
    check_destination(dest)
    source = Run.load(run, device=device, which=which)  # what cannot be used is refused before anything is written
    in_place = dest.is_dir()  # empty, perhaps the shell's own folder: filled, never replaced by another
    tag = uuid.uuid4().hex[:8]
    staging = dest / f".export.{tag}" if in_place else dest.with_name(f".{dest.name}.{tag}.export")  # the umask's modes
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise MmgenError(f"cannot export into {dest}: {exc.strerror or exc}", hint="choose a folder you can write to")
    try:
        files = source_files(source, which)
        write(staging, files)
        manifest = manifest_of(source, staging, source.run_dir.weights(which).name)
        write(staging, {MANIFEST: manifest.to_json().encode()})
        # Loaded back as a receiver would (manifest, plugins, weights' bytes, recipe against weights); the picture
        # and the card are made from what was written, even if the run's files change meanwhile.
        exported = Run.load(staging, device=device, which=which)
        picture = showcase_png(exported, seed=exported.recipe.seed)
        if picture is not None:
            write(staging, {SAMPLES: picture})  # before the card, which shows it when it is there
        report = json.loads(files[EVAL]) if EVAL in files else None
        versions = json.loads(files[exported.run_dir.versions_file.name])
        write(staging, {CARD: model_card(exported, manifest, versions, report, repo_id).encode()})
        publish(staging, dest, in_place)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def publish(staging: Path, dest: Path, in_place: bool) -> None:
    """The finished folder becomes DEST: renamed to it, or (``in_place``: DEST is an existing empty folder) its
    files moved up into DEST. A DEST filled meanwhile is left as it is."""
    moved: list[Path] = []
    try:
        if not in_place:
            os.replace(staging, dest)
            return
        if any(path != staging for path in dest.iterdir()):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY))
        for path in sorted(staging.iterdir()):
            os.replace(path, dest / path.name)
            moved.append(dest / path.name)
        staging.rmdir()
    except OSError as exc:
        for path in moved:
            path.unlink(missing_ok=True)
        raise MmgenError(f"cannot export into {dest}: {exc.strerror or exc}; nothing was exported",
                         hint="name a new folder")


def write(folder: Path, files: dict[str, bytes]) -> None:
    """The files into ``folder``, each atomically; a full disk or a folder not writable is one line."""
    try:
        atomic_write_many({folder / name: payload for name, payload in files.items()})
    except OSError as exc:
        what = "the disk is full" if no_space(exc) else (exc.strerror or str(exc))
        raise CheckpointError(f"cannot write the export: {what}; nothing was exported",
                              hint="free some space, or choose another DEST")
