"""The Linear source adapter against a local server answering in Linear's documented GraphQL shapes.

Loopback only, no real sleeping: the client's sleep and clock are a FakeClock
shared with the server (tests/support/fake_linear.py). Truth is the fake's own
data, rendered: every assertion compares what the adapter lists and fetches with
what the "API" holds.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from app.events.sync import FileChange, PlanRequested
from app.sources import SourceError, SourceOptions, get_adapter
from app.sources.linear import SYNC_POINT_MARGIN_SECONDS, format_point, parse_point
from app.sources.linear_render import render_issue
from tests.support.fake_github import FakeClock
from tests.support.fake_linear import FakeLinear, iso

ORG = "org-6d0f1a2b"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def linear(clock):
    server = FakeLinear(clock, organization_id=ORG)
    server.add_team("ENG", "Engineering")
    server.add_team("OPS", "Operations")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def options(linear, clock):
    return SourceOptions(
        linear_api_url=linear.url,
        linear_api_key=linear.api_key,
        sleep=clock.sleep,
        clock=clock,
        max_retries=3,
        max_rate_limit_wait_seconds=120,
        random=lambda: 1.0,
    )  # backoff jitter at its top: each wait is its ceiling, 1 s, 2 s, ...


def adapter(options, **config):
    return get_adapter("linear", {"organization_id": ORG, **config}, options)


def workspace(linear: FakeLinear, count: int = 7) -> None:
    for n in range(count):
        issue = linear.add_issue(
            "ENG" if n % 3 else "OPS",
            f"Issue number {n}",
            description=f"Body of {n}.\n\nDetails.",
            priority=n % 5,
            labels=["bug", "backend"][: n % 3],
            assignee="Grace Hopper" if n % 2 else None,
        )
        if n % 2 == 0:
            linear.comment(issue.identifier, f"First thought on {n}")


def quiet(clock: FakeClock) -> None:
    """Time passes with no change: a listing after this is past every earlier change's margin."""
    clock.now += SYNC_POINT_MARGIN_SECONDS + 60


def expected_documents(linear: FakeLinear, teams: tuple[str, ...] = ()) -> dict[str, bytes]:
    """What the API holds, rendered: the oracle. Built from the fake's records, not through the adapter."""
    docs = {}
    for issue in linear.live(teams):
        view = linear._issue_view(issue)
        labels = view["labels"](None)["nodes"]
        comments = view["comments"](None, first=250)["nodes"]
        docs[f"issues/{issue.identifier}.md"] = render_issue(view, labels, comments)
    return docs


async def fetched(source, files: list[FileChange]) -> dict[str, bytes]:
    out, errors = {}, {}
    async with contextlib.aclosing(source.fetch(files)) as stream:
        async for change, content, error in stream:
            if content is None:
                errors[change.path] = error
            else:
                out[change.path] = content
    assert not errors, errors
    return out


def request(mode: str, base: str | None = None, paths: list[str] = ()) -> PlanRequested:
    return PlanRequested(
        job_id="linear:x:7",
        source_id=f"linear:{ORG}",
        source_type="linear",
        source_config={"organization_id": ORG},
        mode=mode,
        base=base,
        paths=list(paths),
        requested_at=datetime.now(UTC),
    )


async def test_a_full_listing_and_fetch_give_every_live_issue_rendered(linear, options):
    workspace(linear)
    linear.archive("ENG-1")
    async with adapter(options) as source:
        listing = await source.list_issues(None, [])
        docs = await fetched(source, listing.upserts)
    assert listing.kind == "full" and not listing.deletes
    assert docs == expected_documents(linear)
    assert "issues/ENG-1.md" not in docs  # archived: not listed, so the planner deletes it as stale


async def test_pages_of_250_are_followed_to_the_end(linear, options):
    for n in range(260):
        linear.add_issue("ENG", f"Bulk {n}")
    async with adapter(options) as source:
        listing = await source.list_issues(None, [])
    assert len(listing.upserts) == 260
    listings = [r for r in linear.requests if r["operationName"] == "HookstreamIssueListing"]
    assert [bool(r["variables"]["after"]) for r in listings] == [False, True]


async def test_comments_beyond_the_first_page_are_fetched_too(linear, options):
    issue = linear.add_issue("ENG", "A busy issue")
    for n in range(130):
        linear.comment(issue.identifier, f"comment {n:03d}")
    async with adapter(options) as source:
        docs = await fetched(source, (await source.list_issues(None, [])).upserts)
    assert docs == expected_documents(linear)
    assert docs["issues/ENG-1.md"].count(b"\n### ") == 130


async def test_teams_limit_the_listing_and_an_unknown_team_fails_with_the_teams_found(linear, options):
    workspace(linear)
    async with adapter(options, teams=["ENG"]) as source:
        listing = await source.list_issues(None, [])
    assert {f.path for f in listing.files} == set(expected_documents(linear, ("ENG",)))
    async with adapter(options, teams=["NOPE"]) as source:
        with pytest.raises(SourceError, match=r"no team\(s\) \['NOPE'\].*teams found: \['ENG', 'OPS'\]"):
            await source.list_issues(None, [])


async def test_a_key_of_another_organization_is_refused(linear, options):
    source = get_adapter("linear", {"organization_id": "org-someone-else"}, options)
    async with source:
        with pytest.raises(SourceError, match="belongs to organization 'org-6d0f1a2b'"):
            await source.list_issues(None, [])


async def test_the_sync_point_is_linears_clock_minus_the_margin_and_never_goes_back(linear, options, clock):
    workspace(linear)
    async with adapter(options) as source:
        first = await source.list_issues(None, [])
        assert parse_point(first.commit) == datetime.fromtimestamp(int(clock.now) - SYNC_POINT_MARGIN_SECONDS, tz=UTC)
        # Linear's clock behind the given point (a skewed server): the point stays where it was.
        ahead = format_point(datetime.fromtimestamp(clock.now + 3600, tz=UTC))
        again = await source.list_issues(ahead, [])
    assert again.commit == ahead


async def test_an_incremental_listing_holds_what_changed_since_the_point_and_converges(linear, options, clock):
    workspace(linear)
    quiet(clock)
    async with adapter(options) as source:
        first = await source.list_issues(None, [])
        documents = await fetched(source, first.upserts)
        quiet(clock)
        linear.update("ENG-2", title="Renamed")
        linear.comment("OPS-1", "a new comment only")  # Linear leaves the issue's updatedAt alone
        linear.archive("ENG-3")
        added = linear.add_issue("ENG", "Brand new")
        second = await source.list_issues(first.commit, [])
        documents.update(await fetched(source, second.upserts))
        for gone in second.deletes:
            documents.pop(gone.path, None)
    assert second.kind == "diff"
    assert {(f.path, f.change) for f in second.files} == {
        ("issues/ENG-2.md", "upsert"),
        ("issues/OPS-1.md", "upsert"),
        ("issues/ENG-3.md", "delete"),
        (f"issues/{added.identifier}.md", "upsert"),
    }
    assert documents == expected_documents(linear)


async def test_an_issue_updated_in_the_same_second_as_the_point_is_listed_again_not_missed(linear, options, clock):
    workspace(linear, 2)
    async with adapter(options) as source:
        first = await source.list_issues(None, [])
        edge = linear.update("ENG-1", title="edited at the point")
        edge.updated_at = parse_point(first.commit).timestamp()  # exactly the sync point: >= keeps it
        second = await source.list_issues(first.commit, [])
    assert ("issues/ENG-1.md", "upsert") in {(f.path, f.change) for f in second.files}


async def test_hints_find_deleted_trashed_and_moved_issues_the_window_cannot_see(linear, options, clock):
    workspace(linear)
    quiet(clock)
    async with adapter(options, teams=["ENG"]) as source:
        first = await source.list_issues(None, [])
        quiet(clock)
        deleted = linear.delete("ENG-2")
        linear.archive("ENG-4", trash=True)
        moved = linear.move("ENG-3", "OPS")  # out of the source's teams: the ENG-filtered window cannot see it
        # OPS-1 and OPS-99 (gone) are other teams' issues: nothing of this source to write or delete.
        second = await source.list_issues(
            first.commit, [deleted.identifier, "issues/ENG-4.md", moved.id, "not-a-hint!", "OPS-1", "OPS-99"]
        )
    assert {(f.path, f.change) for f in second.files} == {
        ("issues/ENG-2.md", "delete"),
        ("issues/ENG-4.md", "delete"),
        ("issues/ENG-3.md", "delete"),
    }
    assert f"issues/{moved.identifier}.md" not in {f.path for f in second.files}


async def test_a_moved_issue_in_scope_is_upserted_under_its_new_identifier_and_its_old_path_deleted(
    linear, options, clock
):
    workspace(linear)
    quiet(clock)
    async with adapter(options) as source:
        first = await source.list_issues(None, [])
        quiet(clock)
        moved = linear.move("OPS-1", "ENG")
        second = await source.list_issues(first.commit, [])
        docs = await fetched(source, second.upserts)
    assert {(f.path, f.change) for f in second.files} == {
        (f"issues/{moved.identifier}.md", "upsert"),
        ("issues/OPS-1.md", "delete"),
    }
    assert docs == {k: v for k, v in expected_documents(linear).items() if k == f"issues/{moved.identifier}.md"}


async def test_list_changes_reads_the_sync_point_from_base_and_the_hints_from_paths(linear, options, clock):
    workspace(linear, 3)
    quiet(clock)
    async with adapter(options) as source:
        full = await source.list_changes(request("incremental"))  # no point yet: everything
        assert full.kind == "full"
        quiet(clock)
        linear.delete("ENG-1")
        incremental = await source.list_changes(request("incremental", base=full.commit, paths=["ENG-1"]))
        assert [(f.path, f.change) for f in incremental.files] == [("issues/ENG-1.md", "delete")]
        assert (await source.list_changes(request("full", base=full.commit))).kind == "full"
        fallback = await source.list_changes(request("incremental", base="8f3c2a1b" * 5))  # a git sha: not ours
    assert fallback.kind == "full" and "not a Linear sync point" in fallback.reason


async def test_rendering_is_deterministic_so_content_hashes_are_stable(linear, options, clock):
    workspace(linear)
    async with adapter(options) as source:
        listing = await source.list_issues(None, [])
        once = await fetched(source, listing.upserts)
        linear.update("ENG-1")  # a change the document does not show (only updatedAt moves)
        twice = await fetched(source, listing.upserts)
    assert once == twice


@pytest.mark.parametrize("failure", ["rate_limit", "complexity_limit"])
async def test_rate_limits_are_waited_out_until_their_reset_and_retried(linear, options, clock, failure):
    workspace(linear, 3)
    linear.failures = [failure]
    async with adapter(options) as source:
        listing = await source.list_issues(None, [])
    assert len(listing.upserts) == 3
    assert clock.sleeps == [31.0 if failure == "rate_limit" else 13.0]  # reset (epoch ms) - now + 1 s


async def test_a_5xx_is_retried_with_backoff_and_gives_up_after_the_bound(linear, options, clock):
    workspace(linear, 2)
    linear.failures = ["server_error", "server_error"]
    async with adapter(options) as source:
        assert len((await source.list_issues(None, [])).upserts) == 2
        assert clock.sleeps == [1.0, 2.0]
        linear.failures = ["server_error"] * 10
        with pytest.raises(
            SourceError, match="Linear is still answering HTTP 503 on query HookstreamScope|still answering HTTP 503"
        ):
            await source.list_issues(None, [])


async def test_a_rate_limit_longer_than_the_worker_waits_fails_the_listing_with_the_reason(linear, clock):
    options = SourceOptions(
        linear_api_url=linear.url,
        linear_api_key=linear.api_key,
        sleep=clock.sleep,
        clock=clock,
        max_rate_limit_wait_seconds=10,
    )
    linear.failures = ["rate_limit"]
    async with adapter(options) as source:
        with pytest.raises(SourceError, match="resets in 31s, longer than the 10s this worker waits"):
            await source.list_issues(None, [])


async def test_a_wrong_key_is_a_source_error_naming_the_setting(linear, clock):
    options = SourceOptions(linear_api_url=linear.url, linear_api_key="lin_api_wrong", sleep=clock.sleep, clock=clock)
    async with adapter(options) as source:
        with pytest.raises(SourceError, match="refused the API key.*HOOKSTREAM_LINEAR_API_KEY"):
            await source.list_issues(None, [])


async def test_a_sources_token_env_is_read_from_the_workers_environment_only_under_a_linear_name(linear, clock):
    options = SourceOptions(
        linear_api_url=linear.url, environ={"LINEAR_KEY_ACME": linear.api_key}, sleep=clock.sleep, clock=clock
    )
    async with adapter(options, token_env="LINEAR_KEY_ACME") as source:
        assert (await source.list_issues(None, [])).kind == "full"
    with pytest.raises(SourceError, match="has no LINEAR_KEY_OTHER"):
        adapter(options, token_env="LINEAR_KEY_OTHER")
    with pytest.raises(SourceError, match="token_env"):
        adapter(options, token_env="HOOKSTREAM_DATABASE_URL")
    with pytest.raises(SourceError, match="no Linear API key"):
        adapter(SourceOptions(linear_api_url=linear.url))


async def test_an_issue_archived_or_moved_between_listing_and_fetch_is_a_failed_file_with_the_reason(linear, options):
    workspace(linear, 4)
    async with adapter(options) as source:
        listing = await source.list_issues(None, [])
        linear.archive("ENG-1")
        linear.move("ENG-2", "OPS")
        linear.delete("OPS-1")
        results = {}
        async with contextlib.aclosing(source.fetch(listing.upserts)) as stream:
            async for change, _content, error in stream:
                results[change.path] = error
    assert "archived or trashed since it was listed" in results["issues/ENG-1.md"]
    assert "moved since it was listed" in results["issues/ENG-2.md"]
    assert "deleted since it was listed" in results["issues/OPS-1.md"]
    assert results["issues/OPS-2.md"] is None


async def test_every_query_the_adapter_sends_is_valid_against_the_schema(linear, options, clock):
    """The fake validates each query with graphql-core (a rejected query answers 400 with errors, which
    the adapter raises); this walks every operation once so none is left unchecked."""
    workspace(linear, 3)
    issue = linear.add_issue("ENG", "many labels", labels=[f"l{n}" for n in range(60)])
    async with adapter(options, teams=["ENG", "OPS"]) as source:
        first = await source.list_issues(None, [])
        await fetched(source, first.upserts)
        await source.list_issues(first.commit, ["ENG-1", issue.id])
    assert {r["operationName"] for r in linear.requests} == {
        "HookstreamScope",
        "HookstreamIssueListing",
        "HookstreamIssues",
        "HookstreamIssueMore",
    }


def test_iso_points_round_trip():
    at = datetime(2024, 5, 2, 10, 21, 7, 123000, tzinfo=UTC)
    assert format_point(at) == "2024-05-02T10:21:07.123Z" == iso(at.timestamp())
    assert parse_point(format_point(at)) == at and parse_point("yesterday") is None
    assert parse_point("2024-05-02T10:21:07") is None  # no zone: not a point of ours
    assert parse_point(format_point(at - timedelta(seconds=1))) < at
