"""An in-memory Hugging Face Hub behind huggingface_hub's real HTTP client.

Only the transport is replaced (``huggingface_hub.set_client_factory`` with an ``httpx`` mock transport):
``create_repo``, ``upload_folder`` / ``push_to_hub`` and ``hf_hub_download`` / ``from_pretrained`` run their
own code and send real requests, which this class answers like the Hub does and records.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field

try:  # huggingface_hub >= 1.x talks through httpx (2.x through its fork httpx2)
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx

_REPO = r"(?P<repo>[^/]+/[^/]+)"


@dataclass
class FakeHub:
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id -> path -> content
    requests: list[tuple[str, str]] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle), follow_redirects=True)

    def _commit_sha(self, repo: str) -> str:
        digest = hashlib.sha1(json.dumps(sorted(self.files.get(repo, {}))).encode())
        for content in self.files.get(repo, {}).values():
            digest.update(hashlib.sha1(content).digest())
        return digest.hexdigest()

    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.requests.append((method, path))
        if method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            repo = f"{body.get('organization') or 'user'}/{body['name']}"
            self.files.setdefault(repo, {})
            return httpx.Response(200, json={"url": f"https://huggingface.co/{repo}", "name": repo})
        if method == "POST" and path == "/api/validate-yaml":  # model card metadata check
            return httpx.Response(200, json={"errors": [], "warnings": []})
        if m := re.fullmatch(rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", path):
            body = json.loads(request.content)
            return httpx.Response(
                200,
                json={
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body["files"]
                    ]
                },
            )
        if m := re.fullmatch(rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", path):
            return self._commit(m["repo"], request.content)
        if m := re.fullmatch(rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(/(?P<folder>.*))?", path):
            return self._tree(m["repo"], m["folder"] or "")
        if m := re.fullmatch(rf"/api/models/{_REPO}(/revision/(?P<rev>[^/]+))?", path):
            repo = m["repo"]
            if repo not in self.files:
                return self._missing_repo()
            siblings = [{"rfilename": name} for name in sorted(self.files[repo])]
            return httpx.Response(200, json={"id": repo, "sha": self._commit_sha(repo), "siblings": siblings})
        if m := re.fullmatch(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path):
            return self._resolve(m["repo"], m["file"], method)
        return httpx.Response(404, json={"error": f"FakeHub does not serve {method} {path}"})

    def _tree(self, repo: str, folder: str) -> httpx.Response:
        """The file listing ``snapshot_download`` asks for (``recursive=true``: every file, no folders)."""
        if repo not in self.files:
            return self._missing_repo()
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        entries = [
            {"type": "file", "path": name, "size": len(content), "oid": hashlib.sha1(content).hexdigest()}
            for name, content in sorted(self.files[repo].items())
            if name.startswith(prefix)
        ]
        return httpx.Response(200, json=entries)

    def _missing_repo(self) -> httpx.Response:
        return httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"}, json={"error": "Repository not found"})

    def _commit(self, repo: str, payload: bytes) -> httpx.Response:
        if repo not in self.files:
            return self._missing_repo()
        lines = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        written = []
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                self.files[repo][value["path"]] = base64.b64decode(value["content"])
                written.append(value["path"])
            elif item["key"] == "deletedFile":
                self.files[repo].pop(item["value"]["path"], None)
        self.commits.append({"repo": repo, "summary": header.get("summary"), "files": written})
        sha = self._commit_sha(repo)
        return httpx.Response(200, json={"commitUrl": f"https://huggingface.co/{repo}/commit/{sha}", "commitOid": sha})

    def _resolve(self, repo: str, filename: str, method: str) -> httpx.Response:
        if repo not in self.files:
            return self._missing_repo()
        content = self.files[repo].get(filename)
        if content is None:
            return httpx.Response(404, headers={"X-Error-Code": "EntryNotFound"}, json={"error": "Entry not found"})
        headers = {
            "X-Repo-Commit": self._commit_sha(repo),
            "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
            "Content-Length": str(len(content)),
            "Content-Type": "application/octet-stream",
        }
        return httpx.Response(200, headers=headers, content=b"" if method == "HEAD" else content)
