"""The language server, driven as an editor drives it: `ruledsl lsp` in a subprocess, JSON-RPC over pipes.

One server serves the whole module (each test opens its own documents); the pure parts (symbol index,
positions, the worker's cancellation, the editor files) are tested directly.
"""

import json
import random
import sys
import threading
from dataclasses import dataclass

import pytest
from conftest import EXAMPLES, ROOT
from helpers import heavy_imports
from lsp_client import LspClient

from ruledsl import ast
from ruledsl.checker import check
from ruledsl.formatter import format_source
from ruledsl.lsp.analysis import analyze, build_index
from ruledsl.signatures import BUILTINS
from ruledsl.source import MAX_SOURCE_BYTES, Source, Span

DEBOUNCE = 0.3
DOC = """task demo "Push both boxes to the goal."

param cell = 0.1  # grid cell size

object agent = color(#ff0000)
object box1 = color(#0000ff)
object box2 = color(#00ffff)
objects boxes = [box1, box2]
region goal = color(#00ff00) at start

goal reach: forall b in boxes: at end inside(b, goal)
process steady: always speed(agent) <= 1.5 * cell and persists(agent, frac=0.5) and avoids(agent, color(red))
"""
LINES = DOC.split("\n")


def pos(line: int, word: str, nth: int = 0) -> tuple[int, int]:
    """(line, character) of the nth whole-word `word` on a line of DOC (ASCII: characters are UTF-16 units)."""
    text, start = LINES[line], -1
    for _ in range(nth + 1):
        start = text.index(word, start + 1)
        while (start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_")) or (
            start + len(word) < len(text) and (text[start + len(word)].isalnum() or text[start + len(word)] == "_")
        ):
            start = text.index(word, start + 1)
    return line, start


def span_of(line: int, word: str, nth: int = 0) -> dict:
    line, start = pos(line, word, nth)
    return {"start": {"line": line, "character": start}, "end": {"line": line, "character": start + len(word)}}


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@pytest.fixture(scope="module")
def client():
    c = LspClient("--stdio", "--debounce", str(DEBOUNCE), cwd=ROOT)
    c.capabilities = c.initialize()["capabilities"]
    yield c
    assert c.close() == 0, "".join(c.stderr)


_uris = iter(range(10**6))


def opened(client, text: str, name: str = "doc") -> str:
    uri = f"file:///tmp/{name}{next(_uris)}.rule"
    client.open(uri, text)
    client.diagnostics(uri, 1)
    return uri


# ---- initialisation and diagnostics -------------------------------------------------------------------


def test_server_advertises_every_feature(client):
    caps = client.capabilities
    for feature in (
        "hoverProvider",
        "definitionProvider",
        "referencesProvider",
        "documentHighlightProvider",
        "documentSymbolProvider",
        "documentFormattingProvider",
    ):
        assert caps.get(feature), feature
    assert caps["completionProvider"]["triggerCharacters"]
    assert caps["textDocumentSync"]["change"] == 2  # incremental
    assert caps["positionEncoding"] == "utf-16"


def test_diagnostics_are_checks_with_utf16_ranges(client):
    text = (
        "object agent = color(#ff0000)  # 🤖 the agent, « rouge »\n"
        'goal reach: ask "is the 🤖 at the goal? ✓" and inside(agnt, agent)\n'
    )
    uri = f"file:///tmp/unicode{next(_uris)}.rule"
    client.open(uri, text)
    published = client.diagnostics(uri, 1)
    expected = check(Source(text)).diagnostics
    assert len(published) == len(expected) > 0
    lines = text.split("\n")
    for got, want in zip(sorted(published, key=lambda d: d["code"]), sorted(expected, key=lambda d: d.code)):
        span = want.span
        assert got["code"] == want.code and got["source"] == "ruledsl"
        assert got["message"] == want.message + (f"\nhint: {want.hint}" if want.hint else "")
        assert got["severity"] == (1 if want.is_error else 2)
        assert got["range"]["start"] == {
            "line": span.line - 1,
            "character": utf16(lines[span.line - 1][: span.column - 1]),
        }
        assert got["range"]["end"] == {
            "line": span.end_line - 1,
            "character": utf16(lines[span.end_line - 1][: span.end_column - 1]),
        }
    typo = next(d for d in published if "agnt" in d["message"])
    column = lines[1].index("agnt")
    assert typo["range"]["start"] == {"line": 1, "character": column + 1}  # the emoji is 2 UTF-16 units
    assert typo["message"].endswith("hint: did you mean `agent`?")

    # An incremental edit addressed in UTF-16 units: replace `agnt` by `agent`.
    edit = {"range": typo["range"], "text": "agent"}
    client.change(uri, 2, [edit])
    assert [d["code"] for d in client.diagnostics(uri, 2)] == []


def test_a_burst_of_edits_is_checked_once(client):
    uri = opened(client, DOC)
    texts = {2: DOC + "goal two: true\n", 3: DOC + "goal three: tru\n", 4: DOC + "goal four: inside(nobody, goal)\n"}
    client.send_raw(b"".join(client.change_message(uri, v, [{"text": t}]) for v, t in texts.items()))
    final = client.diagnostics(uri, 4)
    assert [d["message"].split("\n")[0] for d in final] == ["undefined name `nobody`"]
    assert [p["version"] for p in client.published(uri)] == [1, 4]


def test_an_edit_cancels_the_check_of_an_older_version(client):
    big = _big_program(MAX_SOURCE_BYTES - 10_000)  # several seconds to check
    uri = f"file:///tmp/big{next(_uris)}.rule"
    client.send_raw(
        b"".join(
            [
                _open_message(client, uri, big),
                client.change_message(uri, 2, [{"text": "goal g: inside(nothing, here)\n"}]),
            ]
        )
    )
    assert {d["code"] for d in client.diagnostics(uri, 2, timeout=120)} == {"E201"}
    assert [p["version"] for p in client.published(uri)] == [2]  # the big version was never published


def _open_message(client, uri, text):
    from lsp_client import encode

    return encode(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "ruledsl", "version": 1, "text": text}},
        }
    )


def _big_program(size: int) -> str:
    """A clean program of about `size` characters (many independent blocks)."""
    lines, i, length = ['task big "A long program."'], 0, 0
    while length < size - 400:
        block = [
            f"object o{i} = color(#ff{i % 100:02d}00)",
            f"region r{i} = grow(color(#00{i % 100:02d}ff), 0.02) at start",
            f"goal g{i}: at end inside(o{i}, r{i})",
            f"process p{i}: always persists(o{i}) and speed(o{i}) <= 0.1 and not touches(o{i}, r{i}) until single(o{i})",
        ]
        lines += block
        length += sum(len(line) + 1 for line in block)
        i += 1
    return "\n".join(lines) + "\n"


# ---- hover, definition, references, symbols -------------------------------------------------------------


def hover_text(client, uri, line, character):
    result = client.at(uri, "hover", line, character)
    return result["contents"]["value"] if result else None


def test_hover(client):
    uri = opened(client, DOC)
    inside = hover_text(client, uri, *pos(10, "inside"))
    assert BUILTINS["inside"].signature() in inside and BUILTINS["inside"].doc in inside
    result = client.at(uri, "hover", *pos(11, "speed"))
    assert result["range"] == span_of(11, "speed")
    assert BUILTINS["speed"].signature() in result["contents"]["value"]
    assert "object agent = color(#ff0000)" in hover_text(client, uri, *pos(11, "agent"))
    assert "param cell = 0.1  # grid cell size" in hover_text(client, uri, *pos(11, "cell"))  # comment kept
    assert "objects boxes = [box1, box2]" in hover_text(client, uri, *pos(10, "boxes"))
    assert "forall b in boxes" in hover_text(client, uri, *pos(10, "b", 1))  # the quantified variable's use
    keyword = hover_text(client, uri, *pos(11, "frac"))
    assert "frac" in keyword and BUILTINS["persists"].params[1].doc in keyword
    assert "#ff0000" in hover_text(client, uri, *pos(11, "red"))
    assert client.at(uri, "hover", 1, 0) is None  # a blank line
    assert client.at(uri, "hover", 11, LINES[11].index("<=")) is None  # an operator


def test_definition_and_references(client):
    uri = opened(client, DOC)
    assert client.at(uri, "definition", *pos(11, "agent", 1)) == {"uri": uri, "range": span_of(4, "agent")}
    assert client.at(uri, "definition", *pos(11, "cell")) == {"uri": uri, "range": span_of(2, "cell")}
    assert client.at(uri, "definition", *pos(10, "boxes")) == {"uri": uri, "range": span_of(7, "boxes")}
    assert client.at(uri, "definition", *pos(10, "b", 1)) == {"uri": uri, "range": span_of(10, "b")}
    assert client.at(uri, "definition", *pos(7, "box1")) == {"uri": uri, "range": span_of(5, "box1")}
    assert client.at(uri, "definition", *pos(11, "speed")) is None  # a built-in has no declaration here

    with_declaration = client.at(uri, "references", *pos(11, "agent"), context={"includeDeclaration": True})
    expected = [span_of(4, "agent"), *(span_of(11, "agent", n) for n in range(3))]
    assert [r["range"] for r in with_declaration] == expected
    without = client.at(uri, "references", *pos(4, "agent"), context={"includeDeclaration": False})
    assert [r["range"] for r in without] == expected[1:]
    goal = client.at(uri, "references", *pos(8, "goal"), context={"includeDeclaration": True})
    assert [r["range"] for r in goal] == [span_of(8, "goal"), span_of(10, "goal", 1)]  # not the role `goal`

    highlights = client.at(uri, "documentHighlight", *pos(10, "b"))
    assert [(h["range"], h["kind"]) for h in highlights] == [(span_of(10, "b"), 3), (span_of(10, "b", 1), 2)]


def test_document_symbols_list_declarations_and_rules_with_roles(client):
    uri = opened(client, DOC)
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [(s["name"], s["detail"]) for s in symbols] == [
        ("demo", "task"),
        ("cell", "param"),
        ("agent", "object"),
        ("box1", "object"),
        ("box2", "object"),
        ("boxes", "objects"),
        ("goal", "region"),
        ("reach", "goal"),
        ("steady", "process"),
    ]
    steady = symbols[-1]
    assert steady["selectionRange"] == span_of(11, "steady")
    assert steady["range"] == {"start": {"line": 11, "character": 0}, "end": {"line": 11, "character": len(LINES[11])}}


def test_navigation_keeps_working_beside_a_syntax_error(client):
    text = DOC.replace("region goal", "goal broken: inside(agent,\nregion goal")
    uri = f"file:///tmp/broken{next(_uris)}.rule"
    client.open(uri, text)
    assert [d["code"] for d in client.diagnostics(uri, 1)] == [check(Source(text)).diagnostics[0].code]
    lines = text.split("\n")
    line = next(i for i, t in enumerate(lines) if t.startswith("process steady"))
    character = lines[line].index("agent")
    assert client.at(uri, "definition", line, character)["range"]["start"] == {"line": 4, "character": 7}
    names = [s["name"] for s in client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})]
    assert "broken" not in names and "steady" in names and "agent" in names


def apply_edits(text: str, edits: list[dict]) -> str:
    """The text after LSP edits (positions in characters: the tests' texts here are ASCII)."""
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def offset(p):
        return starts[p["line"]] + p["character"]

    for edit in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        text = text[: offset(edit["range"]["start"])] + edit["newText"] + text[offset(edit["range"]["end"]) :]
    return text


def test_rename_changes_every_occurrence_and_refuses_names_that_would_change_meaning(client):
    uri = opened(client, DOC)
    assert client.at(uri, "prepareRename", *pos(11, "agent")) == {"range": span_of(11, "agent"), "placeholder": "agent"}
    assert client.at(uri, "prepareRename", *pos(11, "speed")) is None  # a built-in
    line, character = pos(11, "agent", 2)
    params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
    edit = client.request("textDocument/rename", {**params, "newName": "hero"})
    assert apply_edits(DOC, edit["changes"][uri]) == DOC.replace("agent", "hero")
    b = client.request(
        "textDocument/rename",
        {**params, "position": dict(zip(("line", "character"), pos(10, "b", 1))), "newName": "crate"},
    )
    assert apply_edits(DOC, b["changes"][uri]) == DOC.replace("forall b in", "forall crate in").replace(
        "inside(b,", "inside(crate,"
    )
    for bad, why in (
        ("goal", "keyword"),
        ("area", "built-in"),
        ("red", "colour"),
        ("box1", "already declared"),
        ("2x", "not a name"),
    ):
        response = client.response("textDocument/rename", {**params, "newName": bad})
        assert why in response["error"]["message"], (bad, response)


def test_quick_fixes_apply_the_did_you_mean_hints(client):
    text = "object agent = color(#ff0000)\ngoal reach: at end inside(agnt, box(0, 0, 1, 1)) and persists(agent, fracc=0.5) and insde(agent, agent)\n"
    uri = f"file:///tmp/typos{next(_uris)}.rule"
    client.open(uri, text)
    published = client.diagnostics(uri, 1)
    assert {d["code"] for d in published} == {"E201", "E303", "E204"}
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}}
    actions = client.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": uri}, "range": whole, "context": {"diagnostics": published}},
    )
    assert sorted(a["title"] for a in actions) == [
        "Change `agnt` to `agent`",
        "Change `fracc` to `frac`",
        "Change `insde` to `inside`",
    ]
    assert all(a["kind"] == "quickfix" and a["isPreferred"] for a in actions)
    fixed = apply_edits(text, [e for a in actions for e in a["edit"]["changes"][uri]])
    assert check(Source(fixed)).ok, fixed
    first_line = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}
    assert (
        client.request(
            "textDocument/codeAction",
            {"textDocument": {"uri": uri}, "range": first_line, "context": {"diagnostics": []}},
        )
        == []
    )


def test_signature_help_marks_the_argument_at_the_cursor(client):
    uri = opened(client, DOC)
    text = DOC + "goal r: inside(agent, goal, frac=0.5) and persists(agent, "
    client.change(uri, 2, [{"text": text}])
    last = len(LINES) - 1

    def help_at(character):
        return client.at(uri, "signatureHelp", last, character)

    inside = help_at(len("goal r: inside(agent, "))
    (signature,) = inside["signatures"]
    assert signature["label"] == BUILTINS["inside"].signature() and inside["activeParameter"] == 1
    labels = [signature["label"][a:b] for a, b in (p["label"] for p in signature["parameters"])]
    assert labels == ["a: region", "b: region", "frac: number = 0.9"]
    assert help_at(len("goal r: inside(agent, goal, frac="))["activeParameter"] == 2  # by keyword
    persists = help_at(len(text.split("\n")[-1]))
    assert persists["signatures"][0]["label"] == BUILTINS["persists"].signature() and persists["activeParameter"] == 1
    assert help_at(len("goal r: ")) is None  # not inside a call


# ---- completion -------------------------------------------------------------------------------------------


def labels_at(client, uri, text_before_cursor_line: int, character: int) -> list[str]:
    result = client.at(uri, "completion", text_before_cursor_line, character)
    return [item["label"] for item in result["items"]]


@pytest.mark.parametrize(
    "typed, present, absent",
    [
        ("", ["goal", "process", "object", "param"], ["inside", "agent", "always"]),
        ("go", ["goal", "region"], ["agent"]),
        ("goal r: ", ["agent", "inside", "always", "forall", "cell", "boxes", "red"], ["task", "frac="]),
        ("goal r: inside(", ["agent", "goal", "box1", "grow", "a=", "frac="], ["cell", "always", "speed", "task"]),
        ("goal r: inside(agent, goal, ", ["frac=", "cell"], ["a=", "agent"]),
        ("goal r: always persists(agent, ", ["frac=", "cell"], ["agent", "speed"]),
        ("goal r: at ", ["start", "end", "cell"], ["agent", "inside"]),
        ("goal r: during [start, ", ["end", "cell"], ["agent"]),
        ("goal r: forall o in ", ["boxes"], ["agent", "goal", "cell"]),
        ("goal r: forall o in boxes: inside(", ["o", "agent"], ["boxes"]),
        ("goal r: distance(agent, ", ["goal", "centroid", "point"], ["area"]),
        ("goal r: speed(agent) <= ", ["cell", "area", "speed"], []),
        ("region near = color(", ["red", "cell", "c=", "tol="], ["agent", "inside"]),
        ("objects many = [", ["agent", "box1"], ["goal", "cell", "inside"]),
        ("object ", [], ["agent", "inside", "goal"]),
        ("goal r: inside(agent, goal)  # a comm", [], ["agent"]),
        ('task t "a prompt with ', [], ["agent"]),
        ("process p: always single(agent) ", ["weight", "and"], []),
    ],
)
def test_completion_in_context(client, typed, present, absent):
    uri = opened(client, DOC, "complete")
    text = DOC + typed
    client.change(uri, 2, [{"text": text}])
    got = labels_at(client, uri, len(LINES) - 1, len(typed))
    for label in present:
        assert label in got, (typed, label, got)
    for label in absent:
        assert label not in got, (typed, label, got)


def test_completion_of_a_builtin_carries_its_signature(client):
    uri = opened(client, DOC + "goal r: ")
    items = client.at(uri, "completion", len(LINES) - 1, len("goal r: "))["items"]
    inside = next(i for i in items if i["label"] == "inside")
    assert inside["detail"] == BUILTINS["inside"].signature()
    assert inside["documentation"]["value"] == BUILTINS["inside"].doc


# ---- formatting -----------------------------------------------------------------------------------------


def format_request(client, uri):
    options = {"tabSize": 4, "insertSpaces": True}
    return client.request("textDocument/formatting", {"textDocument": {"uri": uri}, "options": options})


def test_formatting_is_ruledsl_fmt(client):
    messy = "object  agent=color( #FF0000 )   # the agent\n\n\n\ngoal reach :at end inside(agent,box(0,0,0.5,1))\n"
    uri = opened(client, messy)
    edits = format_request(client, uri)
    assert len(edits) == 1
    assert edits[0]["range"] == {"start": {"line": 0, "character": 0}, "end": {"line": 5, "character": 0}}
    assert edits[0]["newText"] == format_source(Source(messy))
    clean = opened(client, format_source(Source(messy)))
    assert format_request(client, clean) == []
    broken = opened(client, "goal r: inside(\n")
    assert format_request(client, broken) is None


def test_formatting_never_offers_a_different_program(monkeypatch):
    import ruledsl.formatter
    from ruledsl.lsp.server import RuleLanguageServer

    server = RuleLanguageServer()
    text = "object agent = color(#ff0000)\ngoal reach: at end inside(agent, box(0, 0, 0.5, 1))\n"
    assert server.format_text(text) == (text, None)
    for wrong in (text.replace("0.5", "0.6"), text.replace("inside(", "inside(("), text.replace("at end", "at end at")):
        monkeypatch.setattr(ruledsl.formatter, "format_source", lambda source, out=wrong: out)
        formatted, problem = server.format_text(text)
        assert formatted is None and "would change what this program says" in problem, wrong


# ---- broken documents -------------------------------------------------------------------------------------


def _broken_documents() -> dict[str, str]:
    maze = (ROOT / "examples" / "maze.rule").read_text()
    rng = random.Random(16)
    return {
        "random bytes": bytes(rng.randrange(256) for _ in range(4000)).decode("latin-1"),
        "random printable": "".join(rng.choice('goal(),:=#"[] ab\n\t0.5<>') for _ in range(4000)),
        "truncated": maze[: len(maze) // 2],
        "empty": "",
        "only a comment": "# nothing yet",
        "unclosed string": 'task t "never closed\ngoal r: true\n',
        "byte-order mark": "\ufeff" + maze,
        "deep nesting": "goal g: " + "not " * 5000 + "true\n",
        "over the size limit": "# " + "x" * MAX_SOURCE_BYTES + "\n",
        "control characters": "goal r:\x00\x01 at end\x7f true\r\n\x0c",
    }


def test_broken_documents_never_crash_the_server(client):
    checker_failed = False
    for name, text in _broken_documents().items():
        uri = f"file:///tmp/broken{next(_uris)}.rule"
        client.open(uri, text)
        published = client.diagnostics(uri, 1)
        if len(text.encode("utf-8")) <= MAX_SOURCE_BYTES:
            try:
                expected = {d.code for d in check(Source(text.removeprefix("\ufeff"))).diagnostics}
            except RecursionError:
                expected, checker_failed = set(), True  # the checker's limit: the server says so, carries on
            assert {d["code"] for d in published} == expected, name
        for method in ("hover", "definition", "documentHighlight", "completion"):
            client.at(uri, method, 0, 3)
        client.at(uri, "references", 0, 3, context={"includeDeclaration": True})
        client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
        format_request(client, uri)
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert client.process.poll() is None
    messages = client.messages("window/showMessage")
    assert any("limit" in m for m in messages)
    assert any("RecursionError" in m for m in messages) == checker_failed
    uri = opened(client, DOC)
    assert BUILTINS["inside"].doc in hover_text(client, uri, *pos(10, "inside"))


def test_at_most_a_thousand_diagnostics_are_published_the_first_in_the_file(client):
    text = "".join(f"goal g{i}: inside(nobody{i}, nowhere)\n" for i in range(600))  # 1,200 errors
    uri = f"file:///tmp/many{next(_uris)}.rule"
    client.open(uri, text)
    published = client.diagnostics(uri, 1)
    assert len(published) == 1000
    assert [d["range"]["start"]["line"] for d in published] == sorted(d["range"]["start"]["line"] for d in published)
    assert published[-1]["range"]["start"]["line"] == 499  # two per line, from the top
    note = f"{uri}: 200 more diagnostics not shown"
    client._wait(lambda: any(m.startswith(note) for m in client.messages("window/logMessage")) or None, 10, note)


def test_closing_a_document_clears_its_diagnostics(client):
    uri = f"file:///tmp/closing{next(_uris)}.rule"
    client.open(uri, "goal r: inside(x, y)\n")
    assert client.diagnostics(uri, 1)
    client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    client._wait(lambda: client.published(uri)[-1]["diagnostics"] == [] or None, 10, "cleared diagnostics")


# ---- the pure parts ------------------------------------------------------------------------------------------


def test_the_server_imports_no_torch():
    code = (
        "import ruledsl.lsp.server, ruledsl.lsp.worker, ruledsl.lsp.completion\n"
        "from ruledsl.lsp.analysis import analyze\n"
        f"analyze(open(r'{EXAMPLES[0]}').read())\n"
        "ruledsl.lsp.server.build_server()\n"
    )
    assert heavy_imports(code) == []


def test_the_worker_stops_a_check_in_progress():
    from ruledsl.lsp.worker import CheckWorker

    worker = CheckWorker()
    results = []
    thread = threading.Thread(target=lambda: results.append(worker.analyze(_big_program(900_000), "big")))
    thread.start()
    while worker.started == 0 and thread.is_alive():
        thread.join(0.01)
    worker.cancel()
    thread.join(60)
    assert not thread.is_alive() and results == [None]
    small = worker.analyze("goal g: inside(x, y)\n", "small")  # a fresh process takes over
    assert worker.started == 2 and {d.code for d in small.diagnostics} == {"E201"}
    worker.close()


def test_positions_follow_the_negotiated_encoding():
    from lsprotocol import types
    from pygls.workspace.position_codec import PositionCodec

    from ruledsl.lsp.positions import LineIndex

    text = "ab\né😀x\n"
    offset_x = text.index("x")
    for encoding, character in (("utf-16", 3), ("utf-8", 6), ("utf-32", 2)):
        lines = LineIndex(text, PositionCodec(encoding))
        assert lines.position(offset_x) == types.Position(line=1, character=character), encoding
        assert lines.offset(types.Position(line=1, character=character)) == offset_x, encoding
    lines = LineIndex(text, PositionCodec("utf-16"))
    assert lines.offset(types.Position(line=0, character=99)) == 2  # past the end of a line: its end
    assert lines.offset(types.Position(line=9, character=0)) == len(text)


@dataclass(frozen=True)
class FormulaDecl(ast.Node):
    """A named formula with parameters, the shape issue 15 proposes: `def moving(o) = speed(o) > 0.01`."""

    name: str
    params: tuple
    body: ast.Node
    span: Span
    name_span: Span


def test_the_index_takes_named_formulas_without_change():
    text = "object agent = color(#ff0000)\ndef moving(o) = speed(o) > 0.01\ngoal g: moving(agent)\n"
    source = Source(text)

    def at(snippet: str, after: str = "") -> Span:
        start = text.index(snippet, text.index(after) + len(after) if after else 0)
        return source.span_at(start, start + len(snippet))

    colour = ast.Call("color", (ast.Color("#ff0000", at("#ff0000")),), (), at("color(#ff0000)"), at("color"))
    agent = ast.EntityDecl("object", "agent", colour, None, at("object agent = color(#ff0000)"), at("agent"))
    o_param, o_use = at("o", after="moving("), at("o", after="speed(")
    speed = ast.Call("speed", (ast.Name("o", o_use),), (), at("speed(o)"), at("speed"))
    body = ast.Compare(">", speed, ast.Number("0.01", at("0.01")), at("speed(o) > 0.01"))
    formula = FormulaDecl(
        "moving", (ast.Name("o", o_param),), body, at("def moving(o) = speed(o) > 0.01"), at("moving")
    )
    call_span = at("moving(agent)")
    call = ast.Call(
        "moving", (ast.Name("agent", at("agent", after="moving(")),), (), call_span, at("moving", after="goal g: ")
    )
    rule = ast.RuleDecl("goal", "g", call, None, at("goal g: moving(agent)"), at("g", after="goal "))
    index = build_index(ast.Program((agent, formula, rule), at(text.strip())))

    moving = index.at(call_span.start)
    assert moving.role == "reference" and index.target(moving).kind == "formula"
    assert index.target(moving).start == at("moving").start
    use = index.at(o_use.start)
    assert index.target(use).kind == "variable" and index.target(use).start == o_param.start
    assert [o.start for o in index.references(use.target)] == [o_param.start, o_use.start]
    assert "moving" in index.values() and "o" not in index.values()  # the parameter is local
    agent_use = index.at(at("agent", after="moving(").start)
    assert index.target(agent_use).kind == "object"


def test_analysis_recovers_every_statement_but_the_broken_one():
    text = DOC.replace("region goal", "process half: always inside(agent\nregion goal")
    analysis = analyze(text)
    assert [d.code for d in analysis.diagnostics] == [check(Source(text)).diagnostics[0].code]
    names = [d.name for d in analysis.index.definitions if not d.local]
    assert "half" not in names and {"agent", "goal", "reach", "steady"} <= set(names)
    ((start, end),) = analysis.blanked
    assert text[start:end].startswith("process half")


# ---- editor files -------------------------------------------------------------------------------------------


def test_editor_files_are_generated_from_the_language_tables():
    sys.path.insert(0, str(ROOT / "editors"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    for path, text in generate.files().items():
        assert path.read_text(encoding="utf-8") == text, f"run `python editors/generate.py` ({path.name} is stale)"
    from ruledsl.lsp.completion import language_keywords

    shown = [*generate.DECLARATIONS, *generate.ROLES, *generate.CONTROL, *generate.LOGICAL, *generate.CONSTANTS]
    assert sorted(shown) == sorted(language_keywords())  # every keyword of the grammar, once
    manifest = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    assert language["extensions"] == [".rule"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert (ROOT / "editors" / "vscode" / grammar["path"]).resolve() == generate.TEXTMATE
    assert json.loads(generate.TEXTMATE.read_text())["scopeName"] == grammar["scopeName"]
