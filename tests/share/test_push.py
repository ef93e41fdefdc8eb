"""``mmgen push``, up to the Hub's API: what it hands ``HfApi`` (the repository, the folder and what is in it
at that moment), what it refuses before calling it, and huggingface_hub's errors as one line.

Pushing itself was not exercised: these machines cannot reach the Hub. A stand-in for ``HfApi`` takes the
calls, in place of the one huggingface_hub would make.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects

from mmgen import MmgenError
from mmgen.share.export import export_run
from mmgen.share.push import push
from tests.support.fake_hub import httpx


class FakeApi:
    """Records create_repo and upload_folder, with the files upload_folder would send as they are during the
    upload: those of the folder (and its subfolders) that its allow_patterns and ignore_patterns let through,
    chosen as HfApi chooses them, with huggingface_hub's own ``filter_repo_objects``."""

    def __init__(self, fail: Exception | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.seen: dict[str, bytes] = {}
        self.fail = fail

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        if self.fail is not None:
            raise self.fail
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        chosen = filter_repo_objects(files, allow_patterns=kwargs.get("allow_patterns"),
                                     ignore_patterns=kwargs.get("ignore_patterns"))
        self.seen = {name: files[name].read_bytes() for name in chosen}
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/0123abc"


@pytest.fixture(scope="module")
def export(trained_run, tmp_path_factory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("exports") / "tiny", repo_id="my-lab/tiny")


def test_a_run_is_exported_on_the_way_and_the_folder_uploaded(trained_run):
    api = FakeApi()
    url = push(trained_run, "my-lab/tiny", api=api, private=True)
    assert url == "https://huggingface.co/my-lab/tiny/commit/0123abc"
    (create, created), (upload, uploaded) = api.calls
    assert (create, created) == ("create_repo", {"repo_id": "my-lab/tiny", "repo_type": "model", "private": True,
                                                 "exist_ok": True})
    assert upload == "upload_folder" and uploaded["repo_id"] == "my-lab/tiny" and uploaded["repo_type"] == "model"
    assert uploaded["commit_message"] == "mmgen export of tiny"
    assert set(api.seen) == {"best.safetensors", "recipe.json", "versions.json", "metrics.jsonl", "samples.png",
                             "README.md", "export.json"}
    assert api.seen["best.safetensors"] == (trained_run / "best.safetensors").read_bytes()
    assert "mmgen sample hf://my-lab/tiny" in api.seen["README.md"].decode()  # the card names the repository
    assert not Path(uploaded["folder_path"]).exists()  # the temporary export is gone


def test_an_export_is_uploaded_as_it_is(export):
    api = FakeApi()
    push(export, "my-lab/tiny", api=api, message="first model")
    (_, uploaded) = api.calls[1]
    assert Path(uploaded["folder_path"]) == export and uploaded["commit_message"] == "first model"
    assert api.seen == {p.name: p.read_bytes() for p in export.iterdir()}


def test_only_an_exports_files_go_up(export, tmp_path):
    """Whatever else the folder holds (notes, a logger's folder, a resume file) stays on this machine."""
    folder = Path(shutil.copytree(export, tmp_path / "export"))
    (folder / "notes.txt").write_text("private")
    (folder / "trainer_state.safetensors").write_bytes(b"optimizer state")
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events.out").write_bytes(b"events")
    api = FakeApi()
    push(folder, "my-lab/tiny", api=api)
    assert api.seen == {p.name: p.read_bytes() for p in export.iterdir()}


def test_a_tampered_export_is_refused_before_the_hub_is_called(export, tmp_path):
    broken = Path(shutil.copytree(export, tmp_path / "broken"))
    (broken / "best.safetensors").write_bytes((broken / "best.safetensors").read_bytes()[:100])
    api = FakeApi()
    with pytest.raises(MmgenError, match="it was truncated since"):
        push(broken, "my-lab/tiny", api=api)
    assert api.calls == []


@pytest.mark.parametrize("repo_id", ["tiny", "my-lab/tiny/extra", "my lab/tiny"])
def test_a_malformed_repo_id_is_refused_before_the_hub_is_called(export, repo_id):
    api = FakeApi()
    with pytest.raises(MmgenError, match=f"REPO_ID '{repo_id}' is not a Hub repository id") as info:
        push(export, repo_id, api=api)
    assert info.value.hint == "name it ORG/NAME, for example my-lab/mnist-mvae" and api.calls == []


def http_error(status: int) -> HfHubHTTPError:
    request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(f"{status} Client Error", response=httpx.Response(status, request=request))


@pytest.mark.parametrize(("fail", "line"), [
    (http_error(401), "error: the Hub refused the push to my-lab/tiny: HfHubHTTPError: 401 Client Error "
                      "(hint: log in with `hf auth login`, or set HF_TOKEN to a token that may write to it)"),
    (http_error(500), "error: the Hub refused the push to my-lab/tiny: HfHubHTTPError: 500 Client Error "
                      "(hint: check REPO_ID, then try again later)"),
    (OfflineModeIsEnabled("offline"), "error: cannot push to my-lab/tiny: HF_HUB_OFFLINE=1 is set (hint: unset "
                                      "HF_HUB_OFFLINE on a machine with network; or copy the export folder to one)"),
    (httpx.ConnectError("[Errno -2] Name or service not known"),
     "error: cannot reach the Hub to push to my-lab/tiny: ConnectError: [Errno -2] Name or service not known "
     "(hint: connect to the network and run again)"),
])
def test_the_command_line_pushes_through_hfapi_and_says_why_it_could_not(cli, cli_error, export, monkeypatch,
                                                                         fail, line):
    apis = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: apis.append(FakeApi(fail)) or apis[-1])
    assert cli_error(cli("push", export, "my-lab/tiny")) == line
    assert [name for name, _ in apis[0].calls] == ["create_repo"]


def test_the_command_line_prints_where_it_pushed(cli, export, monkeypatch):
    api = FakeApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: api)
    result = cli("push", export, "my-lab/tiny", "--private")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "pushed to my-lab/tiny: https://huggingface.co/my-lab/tiny/commit/0123abc"
    assert api.calls[0][1]["private"] is True


def test_the_hub_extra_missing_is_one_line_with_the_pip_command(cli, cli_error, export, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert cli_error(cli("push", export, "my-lab/tiny")) == (
        "error: mmgen push needs the huggingface_hub package, which is not installed "
        "(hint: pip install 'mmgen[hub]' (or pip install huggingface_hub))")
    assert json.loads((export / "export.json").read_text())["run"] == "tiny"  # the export is left as it was
