"""A fake installed distribution for subprocess tests: a module and a ``*.dist-info`` folder whose
``entry_points.txt`` lists it in the ``mmgen`` group, as ``pip install`` of a third party's plugin leaves."""

from __future__ import annotations

import os
from pathlib import Path


def installed_plugin_env(site: Path, dist: str, entry_point: str, module: str, source: str,
                         base_env: dict[str, str]) -> dict[str, str]:
    """Write ``module`` (its ``source``) and ``dist``'s metadata into ``site``; the environment a
    subprocess needs to see it (``site`` first on PYTHONPATH)."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[mmgen]\n{entry_point} = {module}\n")
    return {**base_env, "PYTHONPATH": os.pathsep.join([str(site), base_env.get("PYTHONPATH", "")])}
