"""A stand-in for the Hugging Face Hub at the network boundary, for machines that cannot reach it.

huggingface_hub's own HTTP client (chosen with its public ``set_client_factory``) gets a transport that
answers, from folders on disk, the requests ``snapshot_download`` makes: the commit of a revision, the
list of files at that commit, and each file (HEAD, then GET). Everything above the transport is
huggingface_hub's own code, so the cache it leaves (blobs, snapshots, refs, tree listings) is the one it
writes on a real download. ``reachable = False`` makes every request fail to connect, as with no network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub
from huggingface_hub.utils import _http  # the HTTP library it uses, and the client factory to put back

httpx = getattr(_http, "httpx2", None) or _http.httpx  # huggingface_hub 2.x speaks HTTP through httpx2, 1.x httpx


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)  # "METHOD path" of every request
    reachable: bool = True

    def publish(self, repo_id: str, folder: Path) -> str:
        """Serve every file of ``folder`` as the ``main`` branch of ``repo_id``; returns its commit."""
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
        commit = hashlib.sha1(b"".join(name.encode() + data for name, data in files.items())).hexdigest()
        self.repos[repo_id] = Repo(files, commit)
        return commit

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.reachable:
            raise httpx.ConnectError("[Errno -2] Name or service not known (a test without network)", request=request)
        path = request.url.path
        self.requested.append(f"{request.method} {path}")
        for repo_id, repo in self.repos.items():
            api = f"/api/models/{repo_id}/"
            if path.startswith(api + "revision/"):
                return self._revision(repo_id, repo, path.removeprefix(api + "revision/"))
            if path.startswith(api + "tree/"):
                return httpx.Response(200, json=[{"type": "file", "path": name, "size": len(data),
                                                  "oid": hashlib.sha1(data).hexdigest()}
                                                 for name, data in repo.files.items()])
            if path.startswith(f"/{repo_id}/resolve/"):
                return self._file(repo, path.removeprefix(f"/{repo_id}/resolve/"), request.method)
        return httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"})

    def _revision(self, repo_id: str, repo: Repo, revision: str) -> httpx.Response:
        if revision not in ("main", repo.commit):
            return httpx.Response(404, headers={"X-Error-Code": "RevisionNotFound"})
        return httpx.Response(200, json={"id": repo_id, "sha": repo.commit,
                                         "siblings": [{"rfilename": name} for name in repo.files]})

    def _file(self, repo: Repo, rest: str, method: str) -> httpx.Response:
        revision, _, name = rest.partition("/")
        if revision not in ("main", repo.commit) or name not in repo.files:
            return httpx.Response(404, headers={"X-Error-Code": "EntryNotFound"})
        data = repo.files[name]
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                   "Content-Length": str(len(data))}
        return httpx.Response(200, headers=headers, content=b"" if method == "HEAD" else data)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle), follow_redirects=True)


def serve(hub: FakeHub):
    """Make huggingface_hub talk to ``hub``; returns the function that puts the previous client back."""
    previous = _http._GLOBAL_CLIENT_FACTORY
    huggingface_hub.set_client_factory(hub.client)
    return lambda: huggingface_hub.set_client_factory(previous)
