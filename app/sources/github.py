"""A GitHub repository through the REST API.

Config: `{"repository": "owner/name", "installation_id": 123, "branch" or
"default_branch": optional, "api_url": optional}`. Secrets (the App's private
key, a token) come from `SourceOptions`, never from the config, which travels
on Kafka topics.

- Full listing: `GET /repos/{o}/{r}/git/trees/{commit}?recursive=1`. When GitHub
  says `"truncated": true` (a recursive tree is capped, about 100,000 entries
  or 7 MB), the tree is walked instead: each tree non-recursively, each
  subtree recursively again, descending further only where that is truncated
  too. Submodules (`type: commit`) are not files and are not listed.
- Head: `GET /repos/{o}/{r}/commits/{branch}` (the configured branch, else the
  default branch): the documents converge on it. When it is older than the push
  that triggered the job (its `after` descends from it: an API replica behind),
  it is asked again a few times before it is taken.
- Diff: `GET /repos/{o}/{r}/compare/{base}...{head}`. removed -> delete;
  renamed -> delete `previous_filename` + upsert `filename`. Falls back to full
  when `base` is unknown (404/422), when it is not an ancestor of the head
  (status diverged/behind: a three-dot compare is then against the merge base,
  not `base`; a force push), or when the compare lists 300 files (GitHub's cap:
  the list may be incomplete).
- Content: `GET /repos/{o}/{r}/git/blobs/{sha}` (base64), a few at a time.
- Config file: `GET /repos/{o}/{r}/contents/{path}?ref={commit}` (404: none).
- Rate limits: 403/429 with `retry-after`, or with `x-ratelimit-remaining: 0`
  and `x-ratelimit-reset`, wait (with the injected sleep) and retry, a bounded
  number of times and never longer than `max_rate_limit_wait_seconds`; then
  SourceError. 5xx, timeouts and connection errors are retried with backoff and
  jitter (`app.sources.retries.Attempts`, HOOKSTREAM_RETRY_*).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.events.sync import FileChange
from app.sources.base import Fetched, FileAt, SourceAdapter, SourceError, SourceOptions
from app.sources.github_auth import CachedToken, app_jwt, parse_expiry, token_lock
from app.sources.retries import Attempts

COMPARE_FILE_CAP = 300
API_VERSION = "2022-11-28"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_RETRYABLE_STATUS = (500, 502, 503, 504)


class GitHubConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    installation_id: int | None = None
    branch: str | None = None
    default_branch: str | None = None
    api_url: str | None = None


class _Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Any, body: Any) -> None:
        self.status, self.headers, self.body = status, headers, body


class GitHubSource(SourceAdapter):
    source_type = "github"
    head_may_lag = True
    reads_config_files = True

    def __init__(
        self, config: dict, options: SourceOptions | None = None, session: aiohttp.ClientSession | None = None
    ) -> None:
        try:
            self.config = GitHubConfig.model_validate(config)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SourceError(
                f"github source config {'.'.join(map(str, err['loc']))}: {err['msg']} "
                '(expected {"repository": "owner/name", "installation_id": 123})'
            ) from None
        self.options = options or SourceOptions()
        self.api_url = (self.config.api_url or self.options.github_api_url).rstrip("/")
        self.repo_path = f"/repos/{self.config.repository}"
        self._session = session
        self._owns_session = session is None
        if self.options.github_app_id and self.options.github_private_key and self.config.installation_id is None:
            raise SourceError(
                f"github source {self.config.repository}: installation_id is required with GitHub App authentication"
            )

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.http_timeout_seconds),
                headers={
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": API_VERSION,
                    "User-Agent": "hookstream",
                },
            )
        return self._session

    # -- authentication -----------------------------------------------------

    def _uses_app(self) -> bool:
        return bool(self.options.github_app_id and self.options.github_private_key)

    async def _authorization(self, *, refresh: bool = False) -> str | None:
        if self._uses_app():
            return f"Bearer {await self._installation_token(refresh)}"
        if self.options.github_token:
            return f"Bearer {self.options.github_token}"
        return None  # anonymous: public repositories, 60 requests an hour

    async def _installation_token(self, refresh: bool) -> str:
        key = (self.api_url, str(self.options.github_app_id), self.config.installation_id)
        cache = self.options.token_cache
        async with token_lock(cache, key):
            cached = cache.get(key)
            if cached is not None and not refresh and cached.fresh(self.options.clock()):
                return cached.token
            jwt = app_jwt(str(self.options.github_app_id), self.options.github_private_key or "", self.options.clock())
            resp = await self._send(
                "POST", f"/app/installations/{self.config.installation_id}/access_tokens", f"Bearer {jwt}"
            )
            if resp.status != 201 or not isinstance(resp.body, dict) or not isinstance(resp.body.get("token"), str):
                raise SourceError(
                    f"GitHub refused an installation token for installation {self.config.installation_id} "
                    f"(HTTP {resp.status}: {_message(resp.body)}); check the app id, private key and that the app is installed"
                )
            cache[key] = CachedToken(resp.body["token"], parse_expiry(resp.body.get("expires_at")))
            return cache[key].token

    # -- requests -----------------------------------------------------------

    async def _get(self, path: str, params: dict[str, str] | None = None, *, allow: tuple[int, ...] = ()) -> _Response:
        """GET with authentication; statuses in `allow` are returned, other failures raise SourceError."""
        authorization = await self._authorization()
        resp = await self._send("GET", path, authorization, params)
        if resp.status == 401 and self._uses_app():
            # A revoked or rotated installation token: mint a new one, once.
            resp = await self._send("GET", path, await self._authorization(refresh=True), params)
        if resp.status == 200 or resp.status in allow:
            return resp
        if resp.status in (401, 403):
            raise SourceError(
                f"GitHub denied {path} (HTTP {resp.status}: {_message(resp.body)}); check the installation's access to {self.config.repository}"
            )
        if resp.status == 404:
            raise SourceError(
                f"GitHub has no {path} (HTTP 404): the repository, commit or tree does not exist or is not visible to this installation"
            )
        raise SourceError(f"GitHub answered HTTP {resp.status} for {path}: {_message(resp.body)}")

    async def _send(
        self, method: str, path: str, authorization: str | None, params: dict[str, str] | None = None
    ) -> _Response:
        """One request, retried through rate limits, 5xx, timeouts and connection errors (bounded: `Attempts`)."""
        headers = {"Authorization": authorization} if authorization else {}
        attempts = Attempts(self.options, "GitHub", path)
        while True:
            try:
                async with self._http().request(method, self.api_url + path, params=params, headers=headers) as r:
                    raw = await r.read()
                    status, resp_headers = r.status, r.headers
            except (TimeoutError, aiohttp.ClientError) as exc:
                await attempts.backoff(f"unreachable at {self.api_url} ({type(exc).__name__}: {exc})")
                continue
            body = _json(raw)
            wait = _rate_limit_wait(status, resp_headers, body, self.options.clock(), attempts.attempt)
            if wait is not None:
                await attempts.rate_limited(wait, "rate limited")
            elif status in _RETRYABLE_STATUS:
                await attempts.backoff(f"answering HTTP {status}")
            else:
                return _Response(status, resp_headers, body)

    # -- listing ------------------------------------------------------------

    async def head(self) -> str:
        ref = self.config.branch or self.config.default_branch
        if ref is None:
            ref = (await self._get(self.repo_path)).body.get("default_branch")
            if not ref:
                raise SourceError(f"GitHub repository {self.config.repository} has no default branch (is it empty?)")
        resp = await self._get(f"{self.repo_path}/commits/{quote(ref, safe='/')}", allow=(404, 422))
        sha = resp.body.get("sha") if isinstance(resp.body, dict) else None
        if resp.status != 200 or not isinstance(sha, str):
            raise SourceError(
                f"branch {ref!r} of GitHub repository {self.config.repository} has no commit "
                f"(HTTP {resp.status}: {_message(resp.body)})"
            )
        return sha

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        if ancestor == descendant:
            return True
        status, _ = await self._compare(ancestor, descendant)
        return status in ("ahead", "identical")

    async def _compare(self, base: str, head: str) -> tuple[str | None, list[dict[str, Any]]]:
        """(compare status, files) of `base...head`; (None, []) when GitHub does not know `base`."""
        # per_page=1: files are listed on the first page for the whole comparison; commits are not needed.
        path = f"{self.repo_path}/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        resp = await self._get(path, {"per_page": "1"}, allow=(404, 422))
        if resp.status != 200:
            return None, []
        body = resp.body if isinstance(resp.body, dict) else {}
        return body.get("status"), body.get("files") or []

    async def list_full(self, commit: str) -> list[FileChange]:
        resp = await self._get(f"{self.repo_path}/git/trees/{commit}", {"recursive": "1"})
        tree = _tree(resp.body, commit)
        if tree.get("truncated"):
            entries = await self._walk(tree["sha"], "", asyncio.Semaphore(self.options.fetch_concurrency))
        else:
            entries = tree["tree"]
        files = [
            FileChange(path=e["path"], change="upsert", blob=e["sha"], size=e.get("size"))
            for e in entries
            if e.get("type") == "blob"
        ]
        files.sort(key=lambda f: f.path)
        return files

    async def _walk(self, tree_sha: str, prefix: str, gate: asyncio.Semaphore) -> list[dict[str, Any]]:
        """Entries under a truncated tree, with full paths: one level, then each subtree recursively."""
        async with gate:
            level = _tree((await self._get(f"{self.repo_path}/git/trees/{tree_sha}")).body, tree_sha)
        entries = [dict(e, path=prefix + e["path"]) for e in level["tree"] if e.get("type") == "blob"]

        async def subtree(entry: dict[str, Any]) -> list[dict[str, Any]]:
            sub_prefix = f"{prefix}{entry['path']}/"
            async with gate:
                sub = _tree(
                    (await self._get(f"{self.repo_path}/git/trees/{entry['sha']}", {"recursive": "1"})).body,
                    entry["sha"],
                )
            if sub.get("truncated"):
                return await self._walk(entry["sha"], sub_prefix, gate)
            return [dict(e, path=sub_prefix + e["path"]) for e in sub["tree"]]

        for nested in await asyncio.gather(*(subtree(e) for e in level["tree"] if e.get("type") == "tree")):
            entries.extend(nested)
        return entries

    async def list_diff(self, base: str, commit: str) -> tuple[list[FileChange] | None, str | None]:
        """The changes from `base` to `commit`, or (None, why) when only a full listing is right."""
        status, listed = await self._compare(base, commit)
        if status is None:
            return None, f"the documents' commit {base[:12]} is unknown to GitHub"
        if status not in ("ahead", "identical"):
            return (
                None,
                f"the documents' commit {base[:12]} is not an ancestor of {commit[:12]} (compare status {status!r})",
            )
        if len(listed) >= COMPARE_FILE_CAP:
            return None, f"the compare lists {len(listed)} files, GitHub's cap: the list may be incomplete"
        changes: dict[str, FileChange] = {}
        for f in listed:
            kind, name = f.get("status"), f.get("filename")
            if not isinstance(name, str):
                raise SourceError(f"GitHub's compare lists a file in an undocumented shape: {str(f)[:200]}")
            if kind == "removed":
                changes.setdefault(name, FileChange(path=name, change="delete"))
                continue
            if kind == "renamed" and f.get("previous_filename"):
                old = f["previous_filename"]
                changes.setdefault(old, FileChange(path=old, change="delete"))
            if kind in ("added", "modified", "changed", "copied", "renamed"):
                # An upsert wins over a delete of the same path (a → b while c → a).
                changes[name] = FileChange(path=name, change="upsert", blob=f.get("sha"))
            elif kind != "unchanged":
                raise SourceError(f"GitHub's compare lists {name!r} with an unknown status {kind!r}")
        return sorted(changes.values(), key=lambda c: c.path), None

    async def read_file(self, commit: str, path: str, max_bytes: int) -> FileAt:
        """`GET /repos/{o}/{r}/contents/{path}?ref={commit}`: 404 is no such path; a list is a directory."""
        resp = await self._get(f"{self.repo_path}/contents/{quote(path, safe='/')}", {"ref": commit}, allow=(404,))
        if resp.status == 404:
            return FileAt(None)
        body = resp.body
        if isinstance(body, list):
            return FileAt(None, "is a directory, not a file")
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise SourceError(
                f"GitHub's contents of {path!r} at {commit[:12]} are not in the documented shape: {str(body)[:200]}"
            )
        if body["type"] != "file":
            return FileAt(None, f"is a {body['type']}, not a file")
        size = body.get("size")
        if isinstance(size, int) and size > max_bytes:
            return FileAt(None, f"{size} bytes, more than the {max_bytes} a config file may have")
        fetched = _blob(FileChange(path=path, change="upsert", blob=body.get("sha")), body)
        if fetched.content is None:
            # Files over 1 MB come with `encoding: none` and no content; anything else unreadable.
            return FileAt(None, fetched.error)
        if len(fetched.content) > max_bytes:
            return FileAt(None, f"{len(fetched.content)} bytes, more than the {max_bytes} a config file may have")
        return FileAt(fetched.content)

    # -- content ------------------------------------------------------------

    async def fetch(self, files: Sequence[FileChange]) -> AsyncGenerator[Fetched, None]:
        gate = asyncio.Semaphore(self.options.fetch_concurrency)

        async def one(change: FileChange) -> Fetched:
            if not change.blob or not _SHA.match(change.blob):
                return Fetched(change, None, f"no valid blob sha for {change.path!r}: {change.blob!r}")
            async with gate:
                resp = await self._get(f"{self.repo_path}/git/blobs/{change.blob}", allow=(404, 422))
            if resp.status != 200:
                return Fetched(change, None, f"blob {change.blob} of {change.path!r} not found (HTTP {resp.status})")
            return _blob(change, resp.body)

        tasks = [asyncio.ensure_future(one(c)) for c in files if c.change == "upsert"]
        try:
            for done in asyncio.as_completed(tasks):
                yield await done
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", errors="replace")


def _message(body: Any) -> str:
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)[:200] if body else "no message"


def _rate_limit_wait(status: int, headers: Any, body: Any, now: float, attempt: int) -> float | None:
    """Seconds to wait before retrying a rate-limited answer, or None when it is not one."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now) + 1.0
        except ValueError:
            pass
    if status == 429 or "rate limit" in _message(body).lower():
        # A secondary rate limit without headers: GitHub asks for at least a minute, growing.
        return 60.0 * 2**attempt
    return None  # a plain 403: permissions, not a limit


def _tree(body: Any, sha: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("tree"), list) or not isinstance(body.get("sha"), str):
        raise SourceError(f"GitHub's tree {sha} is not in the documented shape: {str(body)[:200]}")
    return body


def _blob(change: FileChange, body: Any) -> Fetched:
    if not isinstance(body, dict) or not isinstance(body.get("content"), str):
        return Fetched(change, None, f"blob {change.blob} of {change.path!r} is not in the documented shape")
    encoding = body.get("encoding", "base64")
    try:
        content = base64.b64decode(body["content"]) if encoding == "base64" else body["content"].encode("utf-8")
    except (binascii.Error, ValueError) as exc:
        return Fetched(change, None, f"blob {change.blob} of {change.path!r} is not valid base64: {exc}")
    size = body.get("size")
    if isinstance(size, int) and size != len(content):
        return Fetched(
            change, None, f"blob {change.blob} of {change.path!r} is {len(content)} bytes, GitHub says {size}"
        )
    return Fetched(change, content)
