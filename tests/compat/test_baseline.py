"""Wire-compatibility test: the frozen baseline contract against the real server.

Stubs are generated from baseline.proto (the contract the clients in use were
generated from) into a temporary directory when this module is imported, the
real `treestore serve` binary is started on free ports with a fresh data
directory, and every behaviour the wire contract lists is exercised through
those stubs, as an old client would.

The binary is $TREESTORE_BIN, by default <repo>/target/debug/treestore. One
server serves the whole module; each test uses its own policy ids, case ids
and tool names, so tests stay independent.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PAGEINDEX_DIR = REPO / "crates" / "treestore" / "tests" / "data" / "pageindex"
BINARY = Path(os.environ.get("TREESTORE_BIN") or REPO / "target" / "debug" / "treestore")

READY_TIMEOUT = 60.0  # seconds for the server to answer Health with healthy=true
CALL_TIMEOUT = 30.0  # deadline of every RPC
SHUTDOWN_TIMEOUT = 30.0  # seconds for the server to exit after SIGTERM
DEFAULT_SEARCH_LIMIT = 10  # what SearchByKeyword's limit 0 means


# --- Stubs -----------------------------------------------------------------------


def _generate_stubs():
    """Runs grpc_tools.protoc on baseline.proto into a temporary directory
    (removed at exit) and imports the generated modules."""
    out = Path(tempfile.mkdtemp(prefix="treestore-baseline-stubs-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    well_known = resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{HERE}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(HERE / "baseline.proto"),
        ]
    )
    if code != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on baseline.proto (exit {code})")
    sys.path.insert(0, str(out))
    return importlib.import_module("baseline_pb2"), importlib.import_module("baseline_pb2_grpc")


pb, pb_grpc = _generate_stubs()


# --- The server ------------------------------------------------------------------


def _free_ports(n):
    """n distinct free TCP ports on the loopback interface."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Server:
    """A running `treestore serve` process with its own data directory."""

    def __init__(self, workdir: Path):
        self.data = workdir / "data"
        self.port, self.metrics_port = _free_ports(2)
        self.address = f"127.0.0.1:{self.port}"
        self.exit_code = None
        self._stderr_path = workdir / "stderr.log"
        command = [
            str(BINARY),
            "serve",
            "--data", str(self.data),
            "--port", str(self.port),
            "--metrics-port", str(self.metrics_port),
            "--log-level", "warn",
        ]
        try:
            with open(workdir / "stdout.log", "wb") as out, open(self._stderr_path, "wb") as err:
                self.proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=out, stderr=err
                )
        except OSError as err:
            pytest.exit(
                f"cannot start the server {BINARY}: {err}\n"
                "Build it (cargo build) or point TREESTORE_BIN at the binary.",
                returncode=pytest.ExitCode.TESTS_FAILED,
            )

    def stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace")

    def wait_ready(self, channel, client):
        """Polls until the channel connects and Health answers healthy=true;
        fails with the server's stderr if it exits or the timeout passes."""
        deadline = time.monotonic() + READY_TIMEOUT
        connected = grpc.channel_ready_future(channel)
        last = "the channel never connected"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._abort(f"the server exited with {self.proc.returncode} before it was ready")
            try:
                connected.result(timeout=0.5)
                if client.stub.Health(pb.HealthRequest(), timeout=2).healthy:
                    return
                last = "Health answered healthy=false"
            except grpc.FutureTimeoutError:
                continue
            except grpc.RpcError as err:
                last = f"Health failed: {err.code().name} {err.details()}"
            time.sleep(0.2)
        self._abort(f"the server was not ready after {READY_TIMEOUT:.0f} s ({last})")

    def _abort(self, reason, *, end_session=True):
        """Kills the server (if it still runs) and reports why, with its stderr.
        A server that never came up ends the session (reported once, instead of
        as an error of every test); the exit code is recorded, so the fixture's
        teardown does not judge it again."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.exit_code = self.proc.wait()
        message = f"{reason}; its stderr:\n{self.stderr() or '(empty)'}"
        if end_session:
            pytest.exit(message, returncode=pytest.ExitCode.TESTS_FAILED)
        pytest.fail(message)

    @property
    def stopped(self) -> bool:
        return self.exit_code is not None

    def stop(self) -> int:
        """SIGTERM, then waits for the exit; returns the exit code. Idempotent."""
        if self.exit_code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._abort(
                    f"the server did not exit within {SHUTDOWN_TIMEOUT:.0f} s of SIGTERM",
                    end_session=False,
                )
        return self.exit_code


class Client:
    """The baseline stub with a deadline on every call: client.GetNode(request)."""

    def __init__(self, channel):
        self.stub = pb_grpc.TreeStoreServiceStub(channel)

    def __getattr__(self, rpc):
        method = getattr(self.stub, rpc)
        return lambda request: method(request, timeout=CALL_TIMEOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("treestore-server"))
    yield srv
    if not srv.stopped:
        code = srv.stop()
        assert code == 0, f"the server exited with {code} on SIGTERM; stderr:\n{srv.stderr()}"


@pytest.fixture(scope="module")
def client(server):
    # Short reconnect backoff, so a server that starts slowly is seen at once.
    channel = grpc.insecure_channel(
        server.address,
        options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ],
    )
    c = Client(channel)
    server.wait_ready(channel, c)
    yield c
    channel.close()


# --- Helpers ---------------------------------------------------------------------


def ts(value: str | datetime) -> Timestamp:
    """A protobuf Timestamp from an aware datetime or an RFC 3339 string."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    t = Timestamp()
    t.FromDatetime(value)
    return t


def node(node_id, title, parent="", pages=(1, 1), *, summary="", text="", **fields):
    """A baseline Node. depth, child_ids and section_path are left for the
    server to derive unless given in `fields`."""
    return pb.Node(
        node_id=node_id,
        parent_id=parent,
        title=title,
        page_start=pages[0],
        page_end=pages[1],
        summary=summary,
        text=text,
        **fields,
    )


def store(client, policy, version, nodes, *, effective=None, doc_id=None, **metadata):
    """StoreDocument; asserts success. `effective` goes to metadata["effective_date"]."""
    if effective is not None:
        metadata["effective_date"] = effective
    document = pb.Document(
        policy_id=policy,
        version_id=version,
        pageindex_doc_id=doc_id or f"{policy}-{version}.pdf",
        metadata=metadata,
    )
    reply = client.StoreDocument(pb.StoreDocumentRequest(document=document, nodes=nodes))
    assert reply.success, reply.message
    assert reply.message, "StoreDocument should reply a human-readable message"
    return reply


def as_of(policy, when):
    """A GetVersionAsOf request for `when` (a datetime or RFC 3339)."""
    return pb.GetVersionAsOfRequest(policy_id=policy, as_of_time=ts(when))


def baseline_only(message):
    """A copy without the fields the baseline does not know (the server's
    extensions arrive as unknown fields, which make == fail)."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.DiscardUnknownFields()
    return copy


def ids(nodes):
    return [n.node_id for n in nodes]


def expect_error(code, call, request):
    """Asserts that call(request) fails with the gRPC status `code`."""
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    assert info.value.code() == code, f"{info.value.code()}: {info.value.details()}"


def assert_ranked(results, limit=None):
    scores = [r.score for r in results]
    assert all(s > 0 for s in scores), scores
    assert scores == sorted(scores, reverse=True), f"scores not best first: {scores}"
    if limit is not None:
        assert len(results) <= limit


class Tree:
    """What the server should answer about a document, computed in Python from
    the nodes sent (given in pre-order, parent_id "" for top-level)."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        self.by_id = {n.node_id: n for n in self.nodes}
        self.kids = defaultdict(list)
        for n in self.nodes:
            self.kids[n.parent_id].append(n.node_id)

    def order(self):
        return ids(self.nodes)

    def children(self, node_id=""):
        return list(self.kids.get(node_id, []))

    def ancestors(self, node_id):
        path = []
        while node_id:
            path.append(node_id)
            node_id = self.by_id[node_id].parent_id
        return path[::-1]

    def depth(self, node_id):
        return len(self.ancestors(node_id)) - 1

    def section_path(self, node_id):
        return ".".join(
            str(self.kids[self.by_id[a].parent_id].index(a) + 1) for a in self.ancestors(node_id)
        )

    def subtree(self, node_id, max_depth=0):
        out, queue = [], deque([(node_id, 0)])
        while queue:
            current, level = queue.popleft()
            out.append(current)
            if max_depth == 0 or level < max_depth:
                queue.extend((c, level + 1) for c in self.kids.get(current, []))
        return out

    def on_page(self, page):
        return {n.node_id for n in self.nodes if n.page_start <= page <= n.page_end}

    def last_page(self):
        return max(n.page_end for n in self.nodes)


def pageindex_nodes(data, policy=""):
    """Converts PageIndex output to baseline Nodes in pre-order. Open-source
    shape: `structure`, nodes with start_index/end_index/summary. Hosted shape:
    `result` or `nodes`, nodes with page_index (or page_start/page_end) and
    prefix_summary (or summary). Children are in `nodes` in both."""
    hosted = "structure" not in data
    items = data["structure"] if not hosted else data.get("result", data.get("nodes"))
    out = []

    def walk(items, parent):
        for item in items:
            if hosted:
                start = item.get("page_start", item.get("page_index"))
                summary = item.get("prefix_summary", item.get("summary", ""))
            else:
                start = item["start_index"]
                summary = item.get("summary", "")
            end = item.get("page_end" if hosted else "end_index", start)
            node_id = item.get("node_id") or f"{len(out):04d}"
            out.append(
                node(node_id, item["title"], parent, (start, end), summary=summary,
                     text=item.get("text", ""), policy_id=policy)
            )
            walk(item.get("nodes", []), node_id)

    walk(items, "")
    return out


# --- A small hand-made policy ------------------------------------------------------

# Several top-level sections, nested two levels deep; listed in pre-order.
#   cov            p1-4   1
#     cov-in       p1-2   1.1
#       cov-in-icu p2     1.1.1
#     cov-out      p3-4   1.2
#   exc            p5-6   2
#     exc-cos      p5     2.1
#   app            p7     3
OUTLINE = [
    ("cov", "", "Covered services", (1, 4),
     "Services the plan pays for when medically necessary."),
    ("cov-in", "cov", "Inpatient care", (1, 2),
     "Hospital stays of one night or more are covered after prior authorisation."),
    ("cov-in-icu", "cov-in", "Intensive care", (2, 2),
     "Intensive care unit stays are covered for as long as the attending physician "
     "certifies that they are needed."),
    ("cov-out", "cov", "Outpatient care", (3, 4),
     "Office visits, day surgery and diagnostic imaging are covered."),
    ("exc", "", "Exclusions", (5, 6),
     "The plan does not pay for the services listed in this section."),
    ("exc-cos", "exc", "Cosmetic procedures", (5, 5),
     "Procedures done mainly to change appearance are excluded unless they repair "
     "an injury."),
    ("app", "", "Appeals", (7, 7),
     "A member may appeal a denied claim in writing within 180 days."),
]


def outline_nodes():
    return [node(i, title, parent, pages, text=text) for i, parent, title, pages, text in OUTLINE]


@pytest.fixture(scope="module")
def outline(client):
    """The hand-made policy, stored once; read-only tests share it."""
    policy = "compat-outline"
    store(client, policy, "2024-01", outline_nodes(), effective="2024-01-01",
          doc_id="member-handbook-2024.pdf", title="Member handbook", line="health")
    return policy


OUTLINE_TREE = Tree(outline_nodes())


# --- Health and stats --------------------------------------------------------------


def test_health_reports_healthy_with_version_and_uptime(client):
    first = client.Health(pb.HealthRequest())
    assert first.healthy
    assert first.version
    assert first.uptime_seconds >= 0
    second = client.Health(pb.HealthRequest())
    assert second.uptime_seconds >= first.uptime_seconds


def test_stats_count_what_was_stored(client):
    before = client.Stats(pb.StatsRequest())
    nodes = outline_nodes()
    store(client, "compat-stats", "v1", nodes)
    after = client.Stats(pb.StatsRequest())
    assert after.total_documents >= before.total_documents + 1
    assert after.total_nodes >= before.total_nodes + len(nodes)
    assert after.total_versions >= before.total_versions + 1
    assert after.db_size_bytes > 0


# --- Documents ----------------------------------------------------------------------


def test_get_document_returns_document_and_nodes_in_document_order(client, outline):
    reply = client.GetDocument(pb.GetDocumentRequest(policy_id=outline))
    doc = reply.document
    assert doc.policy_id == outline
    assert doc.version_id == "2024-01"
    assert doc.pageindex_doc_id == "member-handbook-2024.pdf"
    for key, value in {"title": "Member handbook", "line": "health",
                       "effective_date": "2024-01-01"}.items():
        assert doc.metadata.get(key) == value, dict(doc.metadata)
    assert ids(reply.nodes) == OUTLINE_TREE.order()


def test_get_document_of_unknown_policy_is_not_found(client):
    expect_error(grpc.StatusCode.NOT_FOUND, client.GetDocument,
                 pb.GetDocumentRequest(policy_id="compat-no-such-policy"))


def test_get_node_returns_stored_fields_and_derived_structure(client, outline):
    for sent in outline_nodes():
        got = client.GetNode(pb.GetNodeRequest(policy_id=outline, node_id=sent.node_id)).node
        assert got.node_id == sent.node_id
        assert got.policy_id == outline
        assert got.parent_id == sent.parent_id
        assert got.title == sent.title
        assert (got.page_start, got.page_end) == (sent.page_start, sent.page_end)
        assert got.text == sent.text
        assert got.depth == OUTLINE_TREE.depth(sent.node_id)
        assert list(got.child_ids) == OUTLINE_TREE.children(sent.node_id)
        assert got.section_path == OUTLINE_TREE.section_path(sent.node_id)
    icu = client.GetNode(pb.GetNodeRequest(policy_id=outline, node_id="cov-in-icu")).node
    assert (icu.depth, icu.section_path) == (2, "1.1.1")


def test_get_node_keeps_structure_fields_the_client_sent(client):
    policy = "compat-given-structure"
    nodes = [
        node("part-1", "Part I: Definitions", pages=(1, 2), summary="Terms used in the policy.",
             section_path="I", depth=0, child_ids=["part-1-a"], policy_id=policy),
        node("part-1-a", "A. Member", "part-1", (2, 2), summary="Who counts as a member.",
             section_path="I.A", depth=1, policy_id=policy),
    ]
    store(client, policy, "v1", nodes)
    for sent in nodes:
        got = client.GetNode(pb.GetNodeRequest(policy_id=policy, node_id=sent.node_id)).node
        assert got.section_path == sent.section_path
        assert got.depth == sent.depth
        assert list(got.child_ids) == list(sent.child_ids)
        assert got.summary == sent.summary


def test_get_node_that_does_not_exist_is_not_found(client, outline):
    expect_error(grpc.StatusCode.NOT_FOUND, client.GetNode,
                 pb.GetNodeRequest(policy_id=outline, node_id="no-such-node"))
    expect_error(grpc.StatusCode.NOT_FOUND, client.GetNode,
                 pb.GetNodeRequest(policy_id="compat-no-such-policy", node_id="cov"))


def test_get_children_of_empty_parent_lists_top_level_nodes(client, outline):
    reply = client.GetChildren(pb.GetChildrenRequest(policy_id=outline, parent_id=""))
    assert ids(reply.children) == ["cov", "exc", "app"]


def test_get_children_lists_children_in_order(client, outline):
    for parent in ("cov", "cov-in", "exc", "cov-out"):
        reply = client.GetChildren(pb.GetChildrenRequest(policy_id=outline, parent_id=parent))
        assert ids(reply.children) == OUTLINE_TREE.children(parent), parent
    leaf = client.GetChildren(pb.GetChildrenRequest(policy_id=outline, parent_id="app"))
    assert list(leaf.children) == []


@pytest.mark.parametrize(
    "node_id, max_depth, expected",
    [
        # Breadth-first: cov-out (level 1) comes before cov-in-icu (level 2).
        ("cov", 0, ["cov", "cov-in", "cov-out", "cov-in-icu"]),
        ("cov", 1, ["cov", "cov-in", "cov-out"]),
        ("cov", 2, ["cov", "cov-in", "cov-out", "cov-in-icu"]),
        ("cov-in", 0, ["cov-in", "cov-in-icu"]),
        ("app", 0, ["app"]),
    ],
)
def test_get_subtree_is_node_then_descendants_breadth_first(client, outline, node_id,
                                                             max_depth, expected):
    assert OUTLINE_TREE.subtree(node_id, max_depth) == expected  # the test's own model
    reply = client.GetSubtree(
        pb.GetSubtreeRequest(policy_id=outline, node_id=node_id, max_depth=max_depth)
    )
    assert ids(reply.nodes) == expected


@pytest.mark.parametrize(
    "node_id, expected",
    [("cov-in-icu", ["cov", "cov-in", "cov-in-icu"]), ("exc-cos", ["exc", "exc-cos"]),
     ("app", ["app"])],
)
def test_get_ancestor_path_runs_from_top_level_to_the_node(client, outline, node_id, expected):
    reply = client.GetAncestorPath(pb.GetAncestorPathRequest(policy_id=outline, node_id=node_id))
    assert ids(reply.ancestors) == expected


@pytest.mark.parametrize(
    "page, expected",
    [(1, {"cov", "cov-in"}), (2, {"cov", "cov-in", "cov-in-icu"}), (4, {"cov", "cov-out"}),
     (5, {"exc", "exc-cos"}), (7, {"app"}), (8, set())],
)
def test_get_nodes_by_page_returns_nodes_whose_range_contains_the_page(client, outline, page,
                                                                       expected):
    assert OUTLINE_TREE.on_page(page) == expected  # the test's own model
    reply = client.GetNodesByPage(pb.GetNodesByPageRequest(policy_id=outline, page_number=page))
    assert sorted(ids(reply.nodes)) == sorted(expected)


def test_delete_document_removes_every_version(client):
    policy = "compat-delete"
    store(client, policy, "v1", outline_nodes(), effective="2023-01-01")
    store(client, policy, "v2", outline_nodes(), effective="2024-01-01")

    reply = client.DeleteDocument(pb.DeleteDocumentRequest(policy_id=policy))
    assert reply.success, reply.message

    expect_error(grpc.StatusCode.NOT_FOUND, client.GetDocument,
                 pb.GetDocumentRequest(policy_id=policy))
    expect_error(grpc.StatusCode.NOT_FOUND, client.GetNode,
                 pb.GetNodeRequest(policy_id=policy, node_id="cov"))
    expect_error(grpc.StatusCode.NOT_FOUND, client.GetVersionAsOf,
                 as_of(policy, "2030-01-01T00:00:00Z"))
    try:
        listed = client.ListVersions(pb.ListVersionsRequest(policy_id=policy, limit=10))
        assert list(listed.versions) == []
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()

    # The policy id can be used again afterwards.
    store(client, policy, "v3", [node("only", "Only section")])
    again = client.GetDocument(pb.GetDocumentRequest(policy_id=policy))
    assert again.document.version_id == "v3"
    assert ids(again.nodes) == ["only"]


# --- Versions --------------------------------------------------------------------


def test_new_version_becomes_current_for_queries_without_version(client):
    policy = "compat-current-version"
    store(client, policy, "2024", [node("elig", "Eligibility (2024 rules)")],
          effective="2024-01-01")
    store(client, policy, "2025",
          [node("elig", "Eligibility (2025 rules)"), node("claims", "Claims", pages=(2, 3))],
          effective="2025-01-01")

    doc = client.GetDocument(pb.GetDocumentRequest(policy_id=policy))
    assert doc.document.version_id == "2025"
    assert ids(doc.nodes) == ["elig", "claims"]
    got = client.GetNode(pb.GetNodeRequest(policy_id=policy, node_id="elig")).node
    assert got.title == "Eligibility (2025 rules)"
    top = client.GetChildren(pb.GetChildrenRequest(policy_id=policy, parent_id=""))
    assert ids(top.children) == ["elig", "claims"]
    hits = client.SearchByKeyword(pb.SearchRequest(policy_id=policy, query="eligibility", limit=5))
    assert [r.node.title for r in hits.results] == ["Eligibility (2025 rules)"]


def test_get_version_as_of_returns_the_version_in_force(client):
    policy = "compat-version-as-of"
    # Stored in this order; effective dates as a date or as RFC 3339.
    effective = {"v2024-01": "2024-01-01", "v2024-07": "2024-07-01T00:00:00Z",
                 "v2025-01": "2025-01-01"}
    for version, date in effective.items():
        store(client, policy, version, [node("s", "Schedule")], effective=date,
              doc_id=f"schedule-{version}.pdf")

    expect_error(grpc.StatusCode.NOT_FOUND, client.GetVersionAsOf,
                 as_of(policy, "2023-06-01T00:00:00Z"))
    for when, version in [
        ("2024-03-15T12:00:00Z", "v2024-01"),
        ("2024-06-30T23:59:59Z", "v2024-01"),
        ("2024-07-01T00:00:00Z", "v2024-07"),  # in force from its effective start on
        ("2024-12-01T00:00:00Z", "v2024-07"),
        ("2030-01-01T00:00:00Z", "v2025-01"),
    ]:
        got = client.GetVersionAsOf(as_of(policy, when))
        assert (got.policy_id, got.version_id) == (policy, version), when
        assert got.document_id == f"schedule-{version}.pdf", when


def test_list_versions_is_newest_effective_first_and_capped(client):
    policy = "compat-list-versions"
    for version, date in [("v1", "2022-01-01"), ("v2", "2023-01-01"), ("v3", "2024-01-01")]:
        store(client, policy, version, [node("s", "Schedule")], effective=date)
    listed = client.ListVersions(pb.ListVersionsRequest(policy_id=policy, limit=10))
    assert [v.version_id for v in listed.versions] == ["v3", "v2", "v1"]
    assert all(v.policy_id == policy for v in listed.versions)
    capped = client.ListVersions(pb.ListVersionsRequest(policy_id=policy, limit=2))
    assert [v.version_id for v in capped.versions] == ["v3", "v2"]


def test_versions_are_ordered_by_effective_start_not_by_storing_order(client):
    policy = "compat-backdated"
    store(client, policy, "mid-year", [node("s", "Schedule")], effective="2024-06-01")
    store(client, policy, "backdated", [node("s", "Schedule")], effective="2024-01-01")
    listed = client.ListVersions(pb.ListVersionsRequest(policy_id=policy, limit=10))
    assert [v.version_id for v in listed.versions] == ["mid-year", "backdated"]
    assert client.GetVersionAsOf(as_of(policy, "2024-03-01T00:00:00Z")).version_id == "backdated"
    assert client.GetVersionAsOf(as_of(policy, "2024-07-01T00:00:00Z")).version_id == "mid-year"


def test_version_without_effective_date_starts_when_stored(client):
    policy = "compat-effective-now"
    before = datetime.now(timezone.utc) - timedelta(hours=1)
    store(client, policy, "v1", [node("s", "Schedule")])
    after = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert client.GetVersionAsOf(as_of(policy, after)).version_id == "v1"
    expect_error(grpc.StatusCode.NOT_FOUND, client.GetVersionAsOf, as_of(policy, before))


# --- Search ----------------------------------------------------------------------


def test_search_ranks_title_matches_above_a_single_text_mention(client):
    policy = "compat-search"
    store(client, policy, "v1", [
        node("flood", "Flood damage", pages=(3, 3),
             text="Losses caused by rising surface water are covered up to the limit."),
        node("plumbing", "Water damage from plumbing", pages=(4, 4),
             text="Sudden bursts of pipes are covered; a flood is handled under its own section."),
        node("premiums", "Premium payments", pages=(9, 9),
             text="Premiums are due on the first day of each month."),
    ])
    reply = client.SearchByKeyword(pb.SearchRequest(policy_id=policy, query="flood", limit=10))
    found = ids(r.node for r in reply.results)
    assert found == ["flood", "plumbing"]
    assert_ranked(reply.results, 10)
    assert reply.results[0].node.title == "Flood damage"

    top = client.SearchByKeyword(pb.SearchRequest(policy_id=policy, query="flood", limit=1))
    assert ids(r.node for r in top.results) == ["flood"]

    none = client.SearchByKeyword(pb.SearchRequest(policy_id=policy, query="earthquake", limit=10))
    assert list(none.results) == []


def test_search_limit_caps_results_and_zero_means_the_default(client):
    policy = "compat-search-limit"
    nodes = [node(f"plan-{i:02d}", f"Plan option {i}", pages=(i, i),
                  text=f"Option {i} has an annual deductible of {100 * i} dollars.")
             for i in range(1, 13)]
    store(client, policy, "v1", nodes)
    for limit, expected in [(0, DEFAULT_SEARCH_LIMIT), (5, 5), (50, 12)]:
        reply = client.SearchByKeyword(
            pb.SearchRequest(policy_id=policy, query="deductible", limit=limit)
        )
        assert len(reply.results) == expected, limit
        assert_ranked(reply.results)


# --- Invalid arguments ---------------------------------------------------------


# SearchByKeyword with an empty policy_id is not here: the server extends it to
# search every policy (a gap the wire contract asks to close), which old clients
# never relied on being an error.
INVALID_REQUESTS = {
    "GetNode-empty-policy": ("GetNode", pb.GetNodeRequest(node_id="cov")),
    "GetNode-empty-node": ("GetNode", pb.GetNodeRequest(policy_id="compat-outline")),
    "GetChildren-empty-policy": ("GetChildren", pb.GetChildrenRequest(parent_id="cov")),
    "GetSubtree-empty-policy": ("GetSubtree", pb.GetSubtreeRequest(node_id="cov")),
    "GetSubtree-empty-node": ("GetSubtree", pb.GetSubtreeRequest(policy_id="compat-outline")),
    "GetAncestorPath-empty-policy": ("GetAncestorPath", pb.GetAncestorPathRequest(node_id="cov")),
    "GetAncestorPath-empty-node": (
        "GetAncestorPath", pb.GetAncestorPathRequest(policy_id="compat-outline")),
    "GetNodesByPage-empty-policy": ("GetNodesByPage", pb.GetNodesByPageRequest(page_number=1)),
    "GetDocument-empty-policy": ("GetDocument", pb.GetDocumentRequest()),
    "DeleteDocument-empty-policy": ("DeleteDocument", pb.DeleteDocumentRequest()),
    "Search-empty-query": (
        "SearchByKeyword", pb.SearchRequest(policy_id="compat-outline", limit=5)),
    "GetVersionAsOf-empty-policy": (
        "GetVersionAsOf", pb.GetVersionAsOfRequest(as_of_time=ts("2024-01-01T00:00:00Z"))),
    "ListVersions-empty-policy": ("ListVersions", pb.ListVersionsRequest(limit=5)),
    "StoreDocument-empty-policy": (
        "StoreDocument",
        pb.StoreDocumentRequest(document=pb.Document(version_id="v1"), nodes=[node("a", "A")])),
    "GetPrompt-empty-prompt": ("GetPrompt", pb.GetPromptRequest()),
}


@pytest.mark.parametrize("case", INVALID_REQUESTS)
def test_missing_required_ids_are_invalid_argument(client, outline, case):
    # `outline` is stored so that the ids which are given exist.
    rpc, request = INVALID_REQUESTS[case]
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, getattr(client, rpc), request)


# --- Tool results ----------------------------------------------------------------


def tool_result(policy, tool, execution_id, executed_at, **fields):
    return pb.ToolResult(policy_id=policy, tool_name=tool, execution_id=execution_id,
                         executed_at=ts(executed_at), **fields)


def test_tool_results_filter_by_policy_and_tool_newest_first(client):
    a, b = "compat-tools-a", "compat-tools-b"
    lookup, calc = "compat-policy-lookup", "compat-calculator"
    results = {
        "r1": tool_result(a, lookup, "compat-exec-r1", "2025-03-01T10:00:00Z", node_id="cov",
                          result_data='{"covered":true}', success=True),
        "r2": tool_result(a, calc, "compat-exec-r2", "2025-03-01T10:01:00Z",
                          result_data="", success=False, error_message="division by zero"),
        "r3": tool_result(a, lookup, "compat-exec-r3", "2025-03-01T10:02:00Z", node_id="exc",
                          result_data='{"covered":false}', success=True),
        "r4": tool_result(b, lookup, "compat-exec-r4", "2025-03-01T10:03:00Z",
                          result_data="{}", success=True),
    }
    for r in results.values():
        reply = client.StoreToolResult(pb.StoreToolResultRequest(result=r))
        assert reply.success, reply.message

    def query(policy, tool, limit=10):
        reply = client.GetToolResults(
            pb.GetToolResultsRequest(policy_id=policy, tool_name=tool, limit=limit)
        )
        return [r.execution_id for r in reply.results], reply.results

    assert query(a, "")[0] == ["compat-exec-r3", "compat-exec-r2", "compat-exec-r1"]
    assert query(a, lookup)[0] == ["compat-exec-r3", "compat-exec-r1"]
    assert query("", lookup)[0] == ["compat-exec-r4", "compat-exec-r3", "compat-exec-r1"]
    assert query(a, "", limit=2)[0] == ["compat-exec-r3", "compat-exec-r2"]

    [failed] = query(a, calc)[1]
    assert baseline_only(failed) == results["r2"]

    # Storing the same execution id again does not duplicate it.
    client.StoreToolResult(pb.StoreToolResultRequest(result=results["r1"]))
    assert query(a, lookup)[0] == ["compat-exec-r3", "compat-exec-r1"]


def test_tool_result_without_execution_id_gets_one(client):
    policy, tool = "compat-tools-autoid", "compat-autoid-tool"
    for minute in (0, 1):
        result = tool_result(policy, tool, "", f"2025-04-01T09:0{minute}:00Z",
                             result_data=f'{{"run":{minute}}}', success=True)
        assert client.StoreToolResult(pb.StoreToolResultRequest(result=result)).success
    reply = client.GetToolResults(
        pb.GetToolResultsRequest(policy_id=policy, tool_name=tool, limit=10)
    )
    assert [r.result_data for r in reply.results] == ['{"run":1}', '{"run":0}']
    generated = [r.execution_id for r in reply.results]
    assert all(generated) and len(set(generated)) == 2, generated


# --- Trajectories --------------------------------------------------------------


def step(number, tool, action, observation, thought, when):
    return pb.TrajectoryStep(step_number=number, tool_name=tool, action=action,
                             observation=observation, thought=thought, timestamp=ts(when))


def test_trajectories_are_returned_per_case_with_steps_in_order(client):
    case, other_case = "compat-case-1001", "compat-case-1002"
    steps = [
        step(1, "search", 'search("knee replacement")', "3 matching sections",
             "Find the section on joint surgery.", "2025-05-01T08:00:01Z"),
        step(2, "get_node", 'get_node("cov-in")', "Inpatient care: covered after authorisation",
             "Check the inpatient rules.", "2025-05-01T08:00:02Z"),
        step(3, "answer", "approve", "Decision recorded",
             "Prior authorisation is on file, so approve.", "2025-05-01T08:00:03Z"),
    ]
    first = pb.Trajectory(trajectory_id="compat-traj-a", case_id=case,
                          steps=[steps[2], steps[0], steps[1]],  # sent out of order
                          started_at=ts("2025-05-01T08:00:00Z"),
                          completed_at=ts("2025-05-01T08:00:04Z"))
    second = pb.Trajectory(trajectory_id="compat-traj-b", case_id=case, steps=[steps[0]],
                           started_at=ts("2025-05-02T08:00:00Z"),
                           completed_at=ts("2025-05-02T08:00:01Z"))
    third = pb.Trajectory(trajectory_id="compat-traj-c", case_id=other_case, steps=[steps[0]],
                          started_at=ts("2025-05-03T08:00:00Z"))
    for t in (first, second, third):
        reply = client.StoreTrajectory(pb.StoreTrajectoryRequest(trajectory=t))
        assert reply.success, reply.message

    reply = client.GetTrajectories(pb.GetTrajectoriesRequest(case_id=case, limit=10))
    by_id = {t.trajectory_id: t for t in reply.trajectories}
    assert sorted(by_id) == ["compat-traj-a", "compat-traj-b"]
    got = by_id["compat-traj-a"]
    assert got.case_id == case
    assert [baseline_only(s) for s in got.steps] == steps
    assert (got.started_at, got.completed_at) == (first.started_at, first.completed_at)

    capped = client.GetTrajectories(pb.GetTrajectoriesRequest(case_id=case, limit=1))
    assert len(capped.trajectories) == 1
    other = client.GetTrajectories(pb.GetTrajectoriesRequest(case_id=other_case, limit=10))
    assert [t.trajectory_id for t in other.trajectories] == ["compat-traj-c"]
    unknown = client.GetTrajectories(
        pb.GetTrajectoriesRequest(case_id="compat-case-none", limit=10)
    )
    assert list(unknown.trajectories) == []


# --- Cross references and contradictions ----------------------------------------


@pytest.fixture(scope="module")
def linked_policies(client):
    """Three small policies for cross references and contradictions."""
    store(client, "compat-xref-main", "v1",
          [node("benefits", "Benefits"), node("limits", "Annual limits", pages=(2, 2))])
    store(client, "compat-xref-rider", "v1", [node("dental", "Dental rider")])
    store(client, "compat-xref-law", "v1", [node("s12", "Section 12: minimum cover")])
    return "compat-xref-main", "compat-xref-rider", "compat-xref-law"


def test_cross_references_are_found_from_both_ends(client, linked_policies):
    main, rider, law = linked_policies
    refs = [
        pb.CrossReference(source_policy_id=main, source_node_id="benefits",
                          target_policy_id=rider, target_node_id="dental",
                          reference_type="extends", context="See the dental rider.",
                          created_at=ts("2025-01-10T00:00:00Z")),
        pb.CrossReference(source_policy_id=law, source_node_id="s12",
                          target_policy_id=main, target_node_id="benefits",
                          reference_type="mandates", context="Minimum cover applies."),
        pb.CrossReference(source_policy_id=main, source_node_id="limits",
                          target_policy_id=law, target_node_id="s12",
                          reference_type="cites", context="Limits follow section 12."),
    ]
    for ref in refs:
        reply = client.StoreCrossReference(pb.StoreCrossReferenceRequest(cross_reference=ref))
        assert reply.success, reply.message

    def ends(policy, node_id):
        reply = client.GetCrossReferences(pb.GetCrossReferencesRequest(policy_id=policy,
                                                                       node_id=node_id))
        return reply.references, {(r.source_node_id, r.target_node_id) for r in reply.references}

    found, pairs = ends(main, "benefits")  # source of one, target of another
    assert pairs == {("benefits", "dental"), ("s12", "benefits")}
    extends = next(r for r in found if r.reference_type == "extends")
    assert (extends.source_policy_id, extends.target_policy_id) == (main, rider)
    assert extends.context == "See the dental rider."
    assert ends(rider, "dental")[1] == {("benefits", "dental")}  # target only
    assert ends(law, "s12")[1] == {("s12", "benefits"), ("limits", "s12")}


@pytest.mark.parametrize("severity", ["low", "medium", "high"])
def test_store_contradiction_accepts_known_severities(client, linked_policies, severity):
    main, _, law = linked_policies
    contradiction = pb.Contradiction(
        contradiction_id=f"compat-contradiction-{severity}", policy_id_a=main, node_id_a="limits",
        policy_id_b=law, node_id_b="s12", severity=severity,
        description="The annual limit is below the statutory minimum.",
        detected_at=ts("2025-02-01T00:00:00Z"),
    )
    reply = client.StoreContradiction(pb.StoreContradictionRequest(contradiction=contradiction))
    assert reply.success, reply.message


def test_store_contradiction_rejects_unknown_severity(client, linked_policies):
    main, _, law = linked_policies
    contradiction = pb.Contradiction(
        contradiction_id="compat-contradiction-bad", policy_id_a=main, node_id_a="limits",
        policy_id_b=law, node_id_b="s12", severity="critical", description="Bad severity.",
    )
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.StoreContradiction,
                 pb.StoreContradictionRequest(contradiction=contradiction))


# --- Prompts ---------------------------------------------------------------------


def test_get_prompt_returns_the_latest_stored_version(client):
    prompt_id = "compat-prompt-triage"
    for version, template, variables in [
        ("1", "Decide whether {procedure} is covered.", ["procedure"]),
        ("2", "Given {policy}, decide whether {procedure} is covered.", ["policy", "procedure"]),
    ]:
        prompt = pb.PromptTemplate(prompt_id=prompt_id, version=version, name="Coverage triage",
                                   template=template, variables=variables)
        assert client.StorePrompt(pb.StorePromptRequest(prompt=prompt)).success
    got = client.GetPrompt(pb.GetPromptRequest(prompt_id=prompt_id)).prompt
    assert (got.prompt_id, got.version, got.name) == (prompt_id, "2", "Coverage triage")
    assert got.template == "Given {policy}, decide whether {procedure} is covered."
    assert list(got.variables) == ["policy", "procedure"]


def test_get_prompt_of_unknown_id_is_not_found(client):
    expect_error(grpc.StatusCode.NOT_FOUND, client.GetPrompt,
                 pb.GetPromptRequest(prompt_id="compat-prompt-none"))


def test_record_prompt_usage(client):
    prompt = pb.PromptTemplate(prompt_id="compat-prompt-usage", version="1", name="Summary",
                               template="Summarise {section}.", variables=["section"])
    assert client.StorePrompt(pb.StorePromptRequest(prompt=prompt)).success
    for usage_id in ("", "compat-usage-1"):  # an empty id is generated by the server
        usage = pb.PromptUsage(usage_id=usage_id, prompt_id="compat-prompt-usage",
                               filled_variables={"section": "Appeals"},
                               response="Members may appeal within 180 days.",
                               used_at=ts("2025-06-01T12:00:00Z"))
        reply = client.RecordPromptUsage(pb.RecordPromptUsageRequest(usage=usage))
        assert reply.success, reply.message


# --- Real PageIndex output -------------------------------------------------------


PAGEINDEX_SAMPLES = sorted(PAGEINDEX_DIR.glob("*.json"))


@pytest.fixture(scope="module")
def pageindex_store(client):
    """Stores a PageIndex sample once (on first use) and returns (policy, Tree)."""
    stored = {}

    def get(sample: Path):
        if sample not in stored:
            data = json.loads(sample.read_text())
            policy = "compat-pageindex-" + sample.stem.removesuffix("_structure")
            nodes = pageindex_nodes(data, policy)
            metadata = {"doc_name": data.get("doc_name", sample.name)}
            if "doc_description" in data:
                metadata["doc_description"] = data["doc_description"]
            store(client, policy, "v1", nodes, doc_id=data.get("doc_name", sample.name), **metadata)
            stored[sample] = (policy, Tree(nodes))
        return stored[sample]

    return get


sample_param = pytest.mark.parametrize(
    "sample", PAGEINDEX_SAMPLES, ids=lambda p: p.stem.removesuffix("_structure")
)


@sample_param
def test_pageindex_document_round_trips(client, pageindex_store, sample):
    policy, tree = pageindex_store(sample)
    reply = client.GetDocument(pb.GetDocumentRequest(policy_id=policy))
    assert len(reply.nodes) == len(tree.nodes)
    assert ids(reply.nodes) == tree.order()
    for got in reply.nodes:
        sent = tree.by_id[got.node_id]
        assert (got.title, got.summary) == (sent.title, sent.summary)
        assert (got.page_start, got.page_end) == (sent.page_start, sent.page_end)
        assert got.parent_id == sent.parent_id
        assert got.depth == tree.depth(got.node_id)
        assert list(got.child_ids) == tree.children(got.node_id)
        assert got.section_path == tree.section_path(got.node_id)


@sample_param
def test_pageindex_nodes_by_page_match_the_tree(client, pageindex_store, sample):
    policy, tree = pageindex_store(sample)
    for page in range(1, tree.last_page() + 2):
        reply = client.GetNodesByPage(pb.GetNodesByPageRequest(policy_id=policy, page_number=page))
        assert sorted(ids(reply.nodes)) == sorted(tree.on_page(page)), f"page {page}"


@sample_param
def test_pageindex_ancestor_paths_match_the_tree(client, pageindex_store, sample):
    policy, tree = pageindex_store(sample)
    for node_id in tree.order():
        reply = client.GetAncestorPath(pb.GetAncestorPathRequest(policy_id=policy, node_id=node_id))
        assert ids(reply.ancestors) == tree.ancestors(node_id), node_id


@sample_param
def test_pageindex_children_and_subtrees_match_the_tree(client, pageindex_store, sample):
    policy, tree = pageindex_store(sample)
    top = client.GetChildren(pb.GetChildrenRequest(policy_id=policy, parent_id=""))
    assert ids(top.children) == tree.children("")
    for node_id in tree.children(""):
        reply = client.GetSubtree(pb.GetSubtreeRequest(policy_id=policy, node_id=node_id))
        assert ids(reply.nodes) == tree.subtree(node_id), node_id
        one_level = client.GetSubtree(
            pb.GetSubtreeRequest(policy_id=policy, node_id=node_id, max_depth=1)
        )
        assert ids(one_level.nodes) == tree.subtree(node_id, 1), node_id


@sample_param
def test_pageindex_search_finds_a_section_by_its_title(client, pageindex_store, sample):
    policy, tree = pageindex_store(sample)
    # The last top-level section's longest title word (lowercased) as the query.
    target = tree.by_id[tree.children("")[-1]]
    word = max((w.strip(".,:;()'\"").lower() for w in target.title.split()), key=len)
    reply = client.SearchByKeyword(pb.SearchRequest(policy_id=policy, query=word, limit=100))
    assert_ranked(reply.results, 100)
    assert target.node_id in ids(r.node for r in reply.results), (word, target.title)


# --- Shutdown (keep last) ----------------------------------------------------------


def test_server_exits_cleanly_on_sigterm(client, server):
    code = server.stop()
    assert code == 0, f"the server exited with {code} on SIGTERM; stderr:\n{server.stderr()}"
