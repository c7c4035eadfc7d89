"""The language server (pygls): document sync, debounced checks, and the LSP features.

Every edit re-checks the whole document (a check is fast for real programs: milliseconds for a few
hundred lines), but not at once: edits within the debounce interval are checked together, the check runs
in the worker process (`ruledsl.lsp.worker`), and an edit that arrives while an older version is being
checked cancels that check. Requests that need the analysis (hover, definition, references,
highlights, symbols, rename, quick fixes) wait for the current version's; completion and signature help
do not wait: they read the text before the cursor (and the names of the latest analysis). Formatting
runs in a thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from ruledsl import __version__
from ruledsl.diagnostics import Diagnostic
from ruledsl.lsp.analysis import Analysis, Definition, Occurrence, SymbolIndex
from ruledsl.lsp.completion import call_at, complete, language_keywords
from ruledsl.lsp.positions import LineIndex
from ruledsl.lsp.worker import CheckWorker
from ruledsl.signatures import BUILTINS, NAMED_COLORS, Builtin
from ruledsl.source import Source

DEBOUNCE_SECONDS = 0.2
MAX_DIAGNOSTICS = 1000  # published per document, in source order; `ruledsl check` lists them all
MAX_HOVER_LINES = 12
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DID_YOU_MEAN = re.compile(r"did you mean `([A-Za-z_][A-Za-z0-9_]*)`\?")  # the checker's hint for a typo

_SYMBOL_KINDS = {
    "task": types.SymbolKind.Module,
    "param": types.SymbolKind.Constant,
    "object": types.SymbolKind.Object,
    "region": types.SymbolKind.Variable,
    "image": types.SymbolKind.File,
    "objects": types.SymbolKind.Array,
    "goal": types.SymbolKind.Event,
    "process": types.SymbolKind.Function,
}


@dataclass(frozen=True)
class Analysed:
    """An analysis with the version and text it was made of: ranges are converted against that text."""

    uri: str
    version: int
    analysis: Analysis
    lines: LineIndex


class _Document:
    """One open document: the text the editor has, and the latest analysis of some version of it."""

    def __init__(self, uri: str):
        self.uri = uri
        self.version = 0
        self.text = ""
        self.latest: Analysed | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.fresh = asyncio.Event()  # set while `latest` is of the current version
        self.closed = False
        self.shown_failure: str | None = None

    @property
    def current(self) -> Analysed | None:
        return self.latest if self.latest is not None and self.latest.version == self.version else None


class RuleLanguageServer(LanguageServer):
    def __init__(self, debounce: float = DEBOUNCE_SECONDS):
        super().__init__("ruledsl", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.debounce = debounce
        self.worker = CheckWorker(MAX_DIAGNOSTICS)
        self.documents: dict[str, _Document] = {}
        self._worker_lock: asyncio.Lock | None = None
        self._running: tuple[str, int] | None = None  # (uri, version) being checked now
        self._tasks: set[asyncio.Task] = set()  # keeps running checks referenced until they end
        self._format_lock = threading.Lock()  # the formatter's parser is shared (it collects comments)

    # ---- document sync and checking ---------------------------------------------------------------

    def update(self, uri: str, delay: float) -> None:
        """The editor's text of `uri` changed (or opened): check it after `delay` seconds."""
        if uri not in self.documents:
            self.documents[uri] = _Document(uri)
        document = self.documents[uri]
        text_document = self.workspace.get_text_document(uri)
        document.version = text_document.version if text_document.version is not None else document.version + 1
        document.text = text_document.source
        document.fresh.clear()
        if self._running is not None and self._running[0] == uri:
            self.worker.cancel()  # that check is of an older version: stop it now
        self._schedule(document, delay)

    def _schedule(self, document: _Document, delay: float) -> None:
        if document.timer is not None:
            document.timer.cancel()
        loop = asyncio.get_running_loop()
        document.timer = loop.call_later(delay, self._start_check, document, document.version)

    def _start_check(self, document: _Document, version: int) -> None:
        document.timer = None
        task = asyncio.ensure_future(self._check(document, version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, document: _Document, version: int) -> None:
        if self._worker_lock is None:
            self._worker_lock = asyncio.Lock()
        async with self._worker_lock:
            if document.closed or document.version != version:
                return  # superseded while waiting for the worker
            text = document.text
            self._running = (document.uri, version)
            try:
                loop = asyncio.get_running_loop()
                analysis = await loop.run_in_executor(None, self.worker.analyze, text, document.uri)
            except Exception as error:  # never leave requests waiting on a check that failed
                analysis = Analysis([], SymbolIndex(), failure=f"the check failed: {type(error).__name__}: {error}")
            finally:
                self._running = None
        if document.closed or document.version != version:
            return  # cancelled or superseded: the newer version has its own check scheduled
        if analysis is None:
            analysis = Analysis([], SymbolIndex(), failure="the check process stopped unexpectedly; edit to retry")
        document.latest = Analysed(document.uri, version, analysis, LineIndex(text, self.workspace.position_codec))
        document.fresh.set()
        self._publish(document, document.latest)

    def _publish(self, document: _Document, analysed: Analysed) -> None:
        analysis = analysed.analysis
        diagnostics = [lsp_diagnostic(d, analysed.lines) for d in analysis.diagnostics]
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=document.uri, diagnostics=diagnostics, version=analysed.version)
        )
        if analysis.omitted:
            self.log(f"{document.uri}: {analysis.omitted} more diagnostics not shown; run `ruledsl check` for all")
        if analysis.failure and analysis.failure != document.shown_failure:
            self.window_show_message(
                types.ShowMessageParams(type=types.MessageType.Warning, message=f"ruledsl: {analysis.failure}")
            )
        document.shown_failure = analysis.failure

    def close(self, uri: str) -> None:
        document = self.documents.pop(uri, None)
        if document is None:
            return
        document.closed = True
        if document.timer is not None:
            document.timer.cancel()
        if self._running is not None and self._running[0] == uri:
            self.worker.cancel()
        document.fresh.set()  # wake requests waiting on it; they find it closed
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    async def analysed(self, uri: str) -> Analysed | None:
        """The analysis of the document's current version (checked now if a check is only scheduled)."""
        document = self.documents.get(uri)
        while document is not None and not document.closed and document.current is None:
            if document.timer is not None:  # a request is waiting: skip the rest of the debounce
                document.timer.cancel()
                self._start_check(document, document.version)
            await document.fresh.wait()
        return document.current if document is not None and not document.closed else None

    def log(self, message: str) -> None:
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=message))

    # ---- formatting -----------------------------------------------------------------------------------

    def format_text(self, text: str) -> tuple[str | None, str | None]:
        """(`ruledsl fmt` of the text, None), or (None, why not). A syntax error needs no words: the
        diagnostics show it. Runs in a thread, so it reports instead of writing to the client itself.

        The result is only offered when it parses to the same program: format-on-save must never turn
        a program into another one, or into one that does not parse, whatever the formatter does.
        """
        from ruledsl.formatter import format_source
        from ruledsl.parser import ParseError, parse

        source = Source(text.removeprefix("\ufeff"))
        with self._format_lock:
            try:
                formatted = format_source(source)
            except ParseError:
                return None, None
            except Exception as error:  # a limit of the formatter (e.g. RecursionError): say so, keep serving
                return None, f"ruledsl fmt failed: {type(error).__name__}: {error}"
        try:
            same = parse(Source(formatted)) == parse(source)
        except Exception:  # ParseError, or a limit of the parser
            same = False
        if not same:
            return None, "ruledsl fmt would change what this program says; left as it is (a formatter bug)"
        return formatted, None


# ---- features -----------------------------------------------------------------------------------------


def lsp_diagnostic(diagnostic: Diagnostic, lines: LineIndex) -> types.Diagnostic:
    """The same code, message and hint as `ruledsl check`; the hint on its own line."""
    message = diagnostic.message + (f"\nhint: {diagnostic.hint}" if diagnostic.hint else "")
    return types.Diagnostic(
        range=lines.range(diagnostic.span.start, diagnostic.span.end),
        message=message,
        severity=types.DiagnosticSeverity.Error if diagnostic.is_error else types.DiagnosticSeverity.Warning,
        code=diagnostic.code,
        source="ruledsl",
        tags=[types.DiagnosticTag.Unnecessary] if diagnostic.code == "W101" else None,
    )


def _declaration_text(text: str, lines: LineIndex, definition: Definition) -> str:
    """The declaration's full lines (so a trailing comment comes along) and the comment lines just above."""
    first = lines.position(definition.decl_start).line
    last = lines.position(definition.decl_end).line
    while first > 0 and text[lines.starts[first - 1] : lines.starts[first]].lstrip().startswith("#"):
        first -= 1
    end = lines.starts[last + 1] - 1 if last + 1 < len(lines.starts) else len(text)
    shown = text[lines.starts[first] : end].split("\n")
    if len(shown) > MAX_HOVER_LINES:
        shown = [*shown[:MAX_HOVER_LINES], "..."]
    return "\n".join(shown)


def hover_markdown(occurrence: Occurrence, index: SymbolIndex, lines: LineIndex) -> str | None:
    text = lines.text
    builtin = BUILTINS.get(occurrence.builtin or "")
    if occurrence.role == "builtin" and builtin is not None:
        return f"```ruledsl\n{builtin.signature()}\n```\n{builtin.doc}"
    if occurrence.role == "keyword_argument" and builtin is not None:
        param = next((p for p in builtin.params if p.name == occurrence.name), None)
        if param is None:
            return f"`{builtin.name}` has no parameter `{occurrence.name}`\n```ruledsl\n{builtin.signature()}\n```"
        default = "" if param.required else f" = {param.default:g}"
        return f"`{param.name}: {param.type_names()}{default}` of `{builtin.name}`: {param.doc}"
    if occurrence.role == "colour":
        return f"named colour `{occurrence.name}` = `{'#%02x%02x%02x' % NAMED_COLORS[occurrence.name]}`"
    definition = index.target(occurrence)
    if definition is None:
        return None
    if definition.kind == "variable":
        header = text[definition.decl_start : definition.end] + (f" in {definition.over}" if definition.over else "")
        what = f"an object of `{definition.over}`" if definition.over else "a parameter"
        return f"`{definition.name}`: {what}, bound here:\n```ruledsl\n{header}\n```"
    return f"```ruledsl\n{_declaration_text(text, lines, definition)}\n```"


def document_symbols(index: SymbolIndex, lines: LineIndex) -> list[types.DocumentSymbol]:
    """Every top-level declaration in order; rules carry their role (goal or process) as the detail."""
    return [
        types.DocumentSymbol(
            name=d.name,
            detail=d.kind,
            kind=_SYMBOL_KINDS.get(d.kind, types.SymbolKind.Function),
            range=lines.range(d.decl_start, d.decl_end),
            selection_range=lines.range(d.start, d.end),
        )
        for d in index.definitions
        if not d.local
    ]


def signature_help(builtin: Builtin, index: int, keyword: str | None) -> types.SignatureHelp:
    """The built-in's signature with the argument at the cursor (by position, or by keyword) marked."""
    label = builtin.signature()
    close = label.rindex(") -> ")
    parameters, at = [], label.index("(") + 1
    for param in builtin.params:
        start = label.index(f"{param.name}:", at)
        end = label.find(", ", start, close)
        at = close if end < 0 else end
        parameters.append(types.ParameterInformation(label=(start, at), documentation=param.doc))
    names = [p.name for p in builtin.params]
    active = names.index(keyword) if keyword in names else index
    return types.SignatureHelp(
        signatures=[types.SignatureInformation(label=label, documentation=builtin.doc, parameters=parameters)],
        active_signature=0,
        active_parameter=active if active < len(names) else None,
    )


def rename_problem(new_name: str, definition: Definition, index: SymbolIndex) -> str | None:
    """Why `definition` cannot be renamed to `new_name` (None: it can)."""
    if not _NAME.fullmatch(new_name):
        return f"`{new_name}` is not a name: letters, digits and `_`, not starting with a digit"
    if new_name in language_keywords():
        return f"`{new_name}` is a keyword"
    if new_name in BUILTINS:
        return f"`{new_name}` is a built-in function"
    if new_name in NAMED_COLORS:
        return f"`{new_name}` is a named colour"
    is_rule = definition.kind in ("goal", "process")
    for other in index.definitions:
        if other.name == new_name and (other.kind in ("goal", "process")) == is_rule and other.kind != "task":
            return f"`{new_name}` is already declared (a {other.kind})"
    return None


def build_server(debounce: float = DEBOUNCE_SECONDS) -> RuleLanguageServer:
    server = RuleLanguageServer(debounce)

    @server.feature(types.INITIALIZED)
    def initialized(ls: RuleLanguageServer, params: types.InitializedParams) -> None:
        ls.worker.start()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: RuleLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.update(params.text_document.uri, delay=0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: RuleLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.update(params.text_document.uri, delay=ls.debounce)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: RuleLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.close(params.text_document.uri)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: RuleLanguageServer, *args) -> None:
        ls.worker.close()

    async def occurrence_at(ls: RuleLanguageServer, uri: str, position: types.Position):
        """(the current analysis, the name at `position` in it); either may be None."""
        analysed = await ls.analysed(uri)
        if analysed is None:
            return None, None
        return analysed, analysed.analysis.index.at(analysed.lines.offset(position))

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: RuleLanguageServer, params: types.HoverParams) -> types.Hover | None:
        analysed, occurrence = await occurrence_at(ls, params.text_document.uri, params.position)
        if analysed is None or occurrence is None:
            return None
        value = hover_markdown(occurrence, analysed.analysis.index, analysed.lines)
        if value is None:
            return None
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=value),
            range=analysed.lines.range(occurrence.start, occurrence.end),
        )

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    async def definition(ls: RuleLanguageServer, params: types.DefinitionParams) -> types.Location | None:
        analysed, occurrence = await occurrence_at(ls, params.text_document.uri, params.position)
        if analysed is None or occurrence is None:
            return None
        target = analysed.analysis.index.target(occurrence)
        if target is None:
            return None
        return types.Location(uri=analysed.uri, range=analysed.lines.range(target.start, target.end))

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    async def references(ls: RuleLanguageServer, params: types.ReferenceParams) -> list[types.Location] | None:
        analysed, occurrence = await occurrence_at(ls, params.text_document.uri, params.position)
        if analysed is None or occurrence is None or occurrence.target < 0:
            return None
        found = analysed.analysis.index.references(occurrence.target, params.context.include_declaration)
        return [types.Location(uri=analysed.uri, range=analysed.lines.range(o.start, o.end)) for o in found]

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
    async def highlight(ls: RuleLanguageServer, params: types.DocumentHighlightParams):
        analysed, occurrence = await occurrence_at(ls, params.text_document.uri, params.position)
        if analysed is None or occurrence is None or occurrence.target < 0:
            return None
        return [
            types.DocumentHighlight(
                range=analysed.lines.range(o.start, o.end),
                kind=types.DocumentHighlightKind.Write if o.role == "definition" else types.DocumentHighlightKind.Read,
            )
            for o in analysed.analysis.index.references(occurrence.target)
        ]

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    async def prepare_rename(ls: RuleLanguageServer, params: types.PrepareRenameParams):
        analysed, occurrence = await occurrence_at(ls, params.text_document.uri, params.position)
        if analysed is None or occurrence is None or occurrence.target < 0:
            return None  # not a declared name: nothing to rename
        span = analysed.lines.range(occurrence.start, occurrence.end)
        return types.PrepareRenamePlaceholder(range=span, placeholder=occurrence.name)

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    async def rename(ls: RuleLanguageServer, params: types.RenameParams) -> types.WorkspaceEdit | None:
        analysed, occurrence = await occurrence_at(ls, params.text_document.uri, params.position)
        if analysed is None or occurrence is None or occurrence.target < 0:
            return None
        index = analysed.analysis.index
        problem = rename_problem(params.new_name, index.definitions[occurrence.target], index)
        if problem is not None:
            raise JsonRpcInvalidParams(problem)
        edits = [
            types.TextEdit(range=analysed.lines.range(o.start, o.end), new_text=params.new_name)
            for o in index.references(occurrence.target)
        ]
        return types.WorkspaceEdit(changes={analysed.uri: edits})

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])
    )
    async def code_actions(ls: RuleLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        """A quick fix for every diagnostic in the range whose hint is "did you mean `x`?"."""
        analysed = await ls.analysed(params.text_document.uri)
        if analysed is None:
            return None
        lines = analysed.lines
        start, end = lines.offset(params.range.start), lines.offset(params.range.end)
        actions = []
        for diagnostic in analysed.analysis.diagnostics:
            suggestion = _DID_YOU_MEAN.search(diagnostic.hint or "")
            if suggestion is None or diagnostic.span.end < start or diagnostic.span.start > end:
                continue
            # The misspelt name starts the span (the span of an unknown keyword argument is `name=value`).
            typo = _NAME.match(lines.text, diagnostic.span.start)
            if typo is None:
                continue
            edit = types.TextEdit(range=lines.range(typo.start(), typo.end()), new_text=suggestion.group(1))
            actions.append(
                types.CodeAction(
                    title=f"Change `{typo.group()}` to `{suggestion.group(1)}`",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[lsp_diagnostic(diagnostic, lines)],
                    is_preferred=True,
                    edit=types.WorkspaceEdit(changes={analysed.uri: [edit]}),
                )
            )
        return actions

    @server.feature(types.TEXT_DOCUMENT_SIGNATURE_HELP, types.SignatureHelpOptions(trigger_characters=["(", ","]))
    def signature(ls: RuleLanguageServer, params: types.SignatureHelpParams) -> types.SignatureHelp | None:
        text = ls.workspace.get_text_document(params.text_document.uri).source
        call = call_at(text, LineIndex(text, ls.workspace.position_codec).offset(params.position))
        return signature_help(*call) if call is not None else None

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    async def symbols(ls: RuleLanguageServer, params: types.DocumentSymbolParams):
        analysed = await ls.analysed(params.text_document.uri)
        if analysed is None:
            return None
        return document_symbols(analysed.analysis.index, analysed.lines)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["(", ",", "[", " ", "="])
    )
    def completion(ls: RuleLanguageServer, params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri).source
        document = ls.documents.get(uri)
        latest = document.latest if document is not None else None
        values = latest.analysis.index.values() if latest is not None else {}
        offset = LineIndex(text, ls.workspace.position_codec).offset(params.position)
        return types.CompletionList(is_incomplete=False, items=complete(text, offset, values))

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    async def formatting(ls: RuleLanguageServer, params: types.DocumentFormattingParams):
        text = ls.workspace.get_text_document(params.text_document.uri).source
        formatted, problem = await asyncio.get_running_loop().run_in_executor(None, ls.format_text, text)
        if problem is not None:
            ls.log(problem)
        if formatted is None:
            return None
        if formatted == text:
            return []
        end = LineIndex(text, ls.workspace.position_codec).end()
        return [
            types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end), new_text=formatted)
        ]

    return server


def main(debounce: float = DEBOUNCE_SECONDS) -> None:
    """Serve over stdin/stdout until the editor says exit (or closes the pipe)."""
    server = build_server(debounce)
    try:
        server.start_io()
    finally:
        server.worker.close()
