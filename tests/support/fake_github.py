"""A local HTTP server answering in GitHub's documented REST shapes, for source tests.

It serves one repository from in-memory commits, with real git object ids
(blob and tree shas are computed as git computes them), GitHub App
installation tokens (the app JWT's RS256 signature and claims are verified
with the app's public key), recursive and truncated trees, compare, blobs,
contents (a file at a ref, as the config file is read), and rate-limit answers
queued on demand. Time comes from an injected `FakeClock`,
shared with the client, so rate-limit resets and token expiry need no sleeping.

Binds 127.0.0.1 on a free port; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web


class FakeClock:
    """`clock()` and an `await sleep(s)` that only advances time and records the wait."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _tree_sha(entries: list[tuple[str, str, str]]) -> str:
    """entries: (mode, name, sha); git sorts a tree's entries by name, a subtree's name as if it ended in "/"."""
    body = b"".join(
        f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha)
        for mode, name, sha in sorted(entries, key=lambda e: e[1].encode() + (b"/" if e[0] == "40000" else b""))
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


@dataclass
class Tree:
    sha: str
    blobs: dict[str, str] = field(default_factory=dict)  # name -> blob sha
    trees: dict[str, Tree] = field(default_factory=dict)


def build_tree(files: dict[str, bytes], objects: dict[str, Any]) -> Tree:
    nested: dict[str, Any] = {}
    for path, content in files.items():
        *dirs, name = path.split("/")
        node = nested
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = content

    def make(node: dict[str, Any]) -> Tree:
        tree = Tree("")
        entries = []
        for name, value in node.items():
            if isinstance(value, dict):
                sub = make(value)
                tree.trees[name] = sub
                entries.append(("40000", name, sub.sha))
            else:
                sha = blob_sha(value)
                objects[sha] = value
                tree.blobs[name] = sha
                entries.append(("100644", name, sha))
        tree.sha = _tree_sha(entries)
        objects[tree.sha] = tree
        return tree

    return make(nested)


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, bytes]
    tree: Tree


class FakeGitHub:
    def __init__(
        self,
        clock: FakeClock,
        app_id: str,
        public_key: Any,
        repository: str = "acme/widgets",
        installation_id: int = 42,
    ) -> None:
        self.clock, self.app_id, self.public_key = clock, app_id, public_key
        self.repository, self.installation_id = repository, installation_id
        self.objects: dict[str, Any] = {}
        self.commits: dict[str, Commit] = {}
        self.branches: dict[str, str] = {}
        self.default_branch = "main"
        self.truncate_recursive_over: int | None = None
        self.compare_file_cap = 300
        # A field left out of every file a compare lists: an answer not in the documented shape.
        self.compare_files_without: str | None = None
        # The next this-many branch-head answers give the head's parent: a replica behind a push.
        self.lagging_head_answers = 0
        self.queued_failures: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        # The next requests are answered this many seconds late, one each: a server slower than the client waits.
        self.delays: list[float] = []
        self.requests: list[str] = []
        self.tokens: dict[str, float] = {}
        self.jwt_claims: list[dict[str, Any]] = []
        self._serial = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- the repository -------------------------------------------------------

    def commit(self, files: dict[str, bytes], parent: str | None = None, branch: str | None = "main") -> str:
        tree = build_tree(files, self.objects)
        sha = hashlib.sha1(f"commit {tree.sha} {parent} {next(self._serial)}".encode()).hexdigest()
        self.commits[sha] = Commit(sha, parent, dict(files), tree)
        if branch:
            self.branches[branch] = sha
        return sha

    def _ancestors(self, sha: str) -> list[str]:
        chain = []
        while sha is not None:
            chain.append(sha)
            sha = self.commits[sha].parent
        return chain

    # -- failures on demand ---------------------------------------------------

    def fail_next(self, *statuses: int) -> None:
        """The next requests answer these statuses (503, 502...), one each, as a struggling GitHub does."""
        for status in statuses:
            self.queued_failures.append((status, {}, {"message": "Server Error"}))

    def rate_limit_next(self, count: int = 1, *, secondary_retry_after: int | None = None, reset_in: int = 30) -> None:
        """The next `count` API requests answer as GitHub does when a limit is hit."""
        for _ in range(count):
            if secondary_retry_after is not None:
                headers = {"retry-after": str(secondary_retry_after)}
                self.queued_failures.append((429, headers, {"message": "You have exceeded a secondary rate limit."}))
            else:
                headers = {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-used": "5000",
                    "x-ratelimit-reset": str(int(self.clock()) + reset_in),
                    "x-ratelimit-resource": "core",
                }
                self.queued_failures.append(
                    (403, headers, {"message": f"API rate limit exceeded for installation ID {self.installation_id}."})
                )

    # -- serving ---------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        repo = "/repos/{owner}/{repo}"
        app.router.add_post("/app/installations/{installation_id}/access_tokens", self.access_token)
        app.router.add_get(repo, self.get_repository)
        app.router.add_get(repo + "/commits/{ref:.+}", self.get_commit)
        app.router.add_get(repo + "/git/trees/{sha}", self.get_tree)
        app.router.add_get(repo + "/compare/{basehead}", self.compare)
        app.router.add_get(repo + "/git/blobs/{sha}", self.get_blob)
        app.router.add_get(repo + "/contents/{path:.+}", self.get_contents)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))  # the fault itself: a slow answer
        if self.queued_failures:
            status, headers, body = self.queued_failures.pop(0)
            return _json(body, status, headers)
        if request.path.startswith("/repos/"):
            owner, repo = request.match_info.get("owner"), request.match_info.get("repo")
            if f"{owner}/{repo}" != self.repository:
                return _json({"message": "Not Found"}, 404)
            auth = request.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").removeprefix("token ")
            if self.tokens.get(token, 0) <= self.clock():
                return _json({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, 401)
        return await handler(request)

    async def access_token(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        claims = self._verified_jwt(auth.removeprefix("Bearer "))
        if claims is None:
            return _json({"message": "A JSON web token could not be decoded"}, 401)
        if request.match_info["installation_id"] != str(self.installation_id):
            return _json({"message": "Not Found"}, 404)
        self.jwt_claims.append(claims)
        token = f"ghs_{hashlib.sha1(str(len(self.tokens)).encode()).hexdigest()[:36]}"
        expires = self.clock() + 3600
        self.tokens[token] = expires
        expires_at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _json(
            {
                "token": token,
                "expires_at": expires_at,
                "permissions": {"contents": "read"},
                "repository_selection": "selected",
            },
            201,
        )

    def _verified_jwt(self, jwt: str) -> dict[str, Any] | None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            header_b64, claims_b64, sig_b64 = jwt.split(".")
            header = orjson.loads(_unb64url(header_b64))
            claims = orjson.loads(_unb64url(claims_b64))
            self.public_key.verify(
                _unb64url(sig_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature, orjson.JSONDecodeError):
            return None
        now = self.clock()
        ok = (
            header.get("alg") == "RS256"
            and claims.get("iss") == self.app_id
            and isinstance(claims.get("iat"), int)
            and claims["iat"] <= now
            and isinstance(claims.get("exp"), int)
            and claims["exp"] > now
            and claims["exp"] - claims["iat"] <= 600
        )
        return claims if ok else None

    async def get_repository(self, request: web.Request) -> web.Response:
        return _json({"id": 1296269, "full_name": self.repository, "default_branch": self.default_branch})

    async def get_commit(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        sha = self.branches.get(ref, ref)
        if ref in self.branches and self.lagging_head_answers and self.commits[sha].parent:
            self.lagging_head_answers -= 1
            sha = self.commits[sha].parent
        if sha not in self.commits:
            return _json({"message": f"No commit found for SHA: {ref}"}, 422)
        return _json({"sha": sha, "commit": {"tree": {"sha": self.commits[sha].tree.sha}}})

    async def get_tree(self, request: web.Request) -> web.Response:
        sha = request.match_info["sha"]
        tree = self.commits[sha].tree if sha in self.commits else self.objects.get(sha)
        if not isinstance(tree, Tree):
            return _json({"message": "Not Found"}, 404)
        recursive = request.query.get("recursive") not in (None, "", "0", "false")
        entries = self._entries(tree, "", recursive)
        truncated = False
        if recursive and self.truncate_recursive_over is not None and len(entries) > self.truncate_recursive_over:
            entries, truncated = entries[: self.truncate_recursive_over], True
        return _json(
            {"sha": tree.sha, "url": f"{self.url}/x/trees/{tree.sha}", "tree": entries, "truncated": truncated}
        )

    def _entries(self, tree: Tree, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, sha in tree.blobs.items():
            out.append(
                {
                    "path": prefix + name,
                    "mode": "100644",
                    "type": "blob",
                    "sha": sha,
                    "size": len(self.objects[sha]),
                    "url": f"{self.url}/x/blobs/{sha}",
                }
            )
        for name, sub in tree.trees.items():
            out.append(
                {
                    "path": prefix + name,
                    "mode": "040000",
                    "type": "tree",
                    "sha": sub.sha,
                    "url": f"{self.url}/x/trees/{sub.sha}",
                }
            )
            if recursive:
                out.extend(self._entries(sub, f"{prefix}{name}/", True))
        return out

    async def compare(self, request: web.Request) -> web.Response:
        base, _, head = request.match_info["basehead"].partition("...")
        base, head = self.branches.get(base, base), self.branches.get(head, head)
        if base not in self.commits or head not in self.commits:
            return _json({"message": "Not Found"}, 404)
        if base == head:
            status = "identical"
        elif base in self._ancestors(head):
            status = "ahead"
        elif head in self._ancestors(base):
            status = "behind"
        else:
            status = "diverged"
        old, new = self.commits[base].files, self.commits[head].files
        removed = {p: blob_sha(c) for p, c in old.items() if p not in new}
        files = []
        for path in sorted(new):
            sha = blob_sha(new[path])
            if path not in old:
                previous = next((p for p, s in removed.items() if s == sha), None)
                if previous is not None:  # GitHub detects renames
                    del removed[previous]
                    files.append(
                        {"sha": sha, "filename": path, "status": "renamed", "previous_filename": previous, "changes": 0}
                    )
                else:
                    files.append({"sha": sha, "filename": path, "status": "added", "changes": 1})
            elif old[path] != new[path]:
                files.append({"sha": sha, "filename": path, "status": "modified", "changes": 2})
        files += [{"sha": sha, "filename": p, "status": "removed", "changes": 1} for p, sha in sorted(removed.items())]
        for f in files:
            f.update(
                blob_url=f"{self.url}/x/blob/{f['filename']}",
                raw_url=f"{self.url}/x/raw/{f['filename']}",
                additions=0,
                deletions=0,
            )
            if self.compare_files_without is not None:
                del f[self.compare_files_without]
        body = {
            "status": status,
            "ahead_by": 1,
            "behind_by": 0,
            "total_commits": 1,
            "base_commit": {"sha": base},
            "merge_base_commit": {"sha": base},
            "commits": [{"sha": head}],
            "files": files[: self.compare_file_cap],
        }
        return _json(body)

    async def get_blob(self, request: web.Request) -> web.Response:
        sha = request.match_info["sha"]
        content = self.objects.get(sha)
        if not isinstance(content, bytes):
            return _json({"message": "Not Found"}, 404)
        encoded = base64.encodebytes(content).decode("ascii")  # GitHub wraps base64 lines too
        return _json(
            {
                "sha": sha,
                "node_id": "B_x",
                "size": len(content),
                "url": f"{self.url}/x/blobs/{sha}",
                "content": encoded,
                "encoding": "base64",
            }
        )

    async def get_contents(self, request: web.Request) -> web.Response:
        """The Contents API: a file's content (base64) at `ref`, a directory's listing, or 404."""
        ref = request.query.get("ref") or self.default_branch
        sha = self.branches.get(ref, ref)
        if sha not in self.commits:
            return _json({"message": f"No commit found for the ref {ref}"}, 404)
        path = request.match_info["path"].strip("/")
        files = self.commits[sha].files
        links = {
            "self": f"{self.url}/x/contents/{path}",
            "git": f"{self.url}/x/git/{path}",
            "html": f"{self.url}/x/{path}",
        }
        if path in files:
            content = files[path]
            return _json(
                {
                    "type": "file",
                    "encoding": "base64",
                    "size": len(content),
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "content": base64.encodebytes(content).decode("ascii"),
                    "sha": blob_sha(content),
                    "url": links["self"],
                    "git_url": links["git"],
                    "html_url": links["html"],
                    "download_url": None,
                    "_links": links,
                }
            )
        under = sorted({p[len(path) + 1 :].split("/", 1)[0] for p in files if p.startswith(path + "/")})
        if under:
            return _json(
                [
                    {
                        "type": "dir" if any(p.startswith(f"{path}/{n}/") for p in files) else "file",
                        "name": n,
                        "path": f"{path}/{n}",
                    }
                    for n in under
                ]
            )
        return _json(
            {
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content",
            },
            404,
        )


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def _unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
