"""The teacher: extraction corpus, palette, prompt, repair loop, HTTP backend, constrained decoding, CLI."""

import http.server
import json
import threading
import time

import numpy as np
import pytest
from tiny_lm import rule_tokenizer, tiny_causal_lm, tiny_vlm
from typer.testing import CliRunner
from vlm_corpus import CASES, PROGRAM, fence

from ruledsl.cli import app
from ruledsl.parser import ParseError, parse
from ruledsl.signatures import BUILTINS
from ruledsl.source import Source
from ruledsl.tasks import generate
from ruledsl.tasks.layout import read_task, write_task
from ruledsl.teacher.backends import BackendError, OpenAIBackend, ScriptedBackend, TransformersBackend
from ruledsl.teacher.extract import ExtractionError, extract
from ruledsl.teacher.palette import palette
from ruledsl.teacher.prompt import build_prompt
from ruledsl.teacher.teach import Teacher

runner = CliRunner()


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name, text, expected", CASES, ids=[c[0] for c in CASES])
def test_extraction_corpus(name, text, expected):
    kind, value = expected
    if kind == "refused":
        with pytest.raises(ExtractionError, match=value):
            extract(text)
        return
    result = extract(text)
    if kind == "ok":
        assert result.ok, result.checked and [(d.code, d.message) for d in result.checked.errors]
        assert len(result.checked.rules) == value
    elif kind == "errors":
        assert not result.ok and result.checked is not None
        assert sorted({d.code for d in result.checked.errors}) == value
    else:
        assert result.checked is None and value in result.reason


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return read_task(write_task(generate("maze", 0, 0, "test"), tmp_path_factory.mktemp("task") / "00000"))


def test_palette_finds_the_entities(task):
    swatches = {s.hex: s for s in palette(task.first_frame)}
    assert set(swatches) == {"#000000", "#ffffff", "#ff0000", "#00ff00"}
    agent = swatches["#ff0000"]
    assert 0 < agent.area < 0.05 and all(0 <= v <= 1 for v in agent.box)
    noisy = np.clip(
        task.first_frame.astype(int) + np.random.default_rng(0).integers(-6, 7, task.first_frame.shape), 0, 255
    )
    assert len(palette(noisy.astype(np.uint8))) == 4  # noise does not invent colours


def test_prompt_is_generated_from_the_signature_table(task):
    prompt = build_prompt(task.prompt, "PALETTE")
    for builtin in BUILTINS.values():
        assert builtin.signature() in prompt
    assert "```rule" in prompt and task.prompt in prompt and "PALETTE" in prompt
    assert "object agent = color(#ff0000)" in prompt  # an example program


def test_repair_loop_fixed_after_one_round(task):
    broken = fence(PROGRAM.replace("inside(agent, goal)", "inside(agnt, goal)"))

    def responder(messages):
        if len(messages) == 2:
            return broken
        assert "did you mean `agent`?" in messages[-1]["content"] and "E201" in messages[-1]["content"]
        return fence(PROGRAM)

    backend = ScriptedBackend(responder)
    teaching = Teacher(backend, max_repairs=2).write_rules(task)
    assert teaching.ok and len(teaching.rounds) == 2 and not teaching.rounds[0].ok
    assert teaching.program.strip() == PROGRAM
    assert backend.calls[1][-2]["content"] == broken  # the model sees its own answer


def test_repair_loop_gives_up(task):
    backend = ScriptedBackend(lambda messages: "I don't know.")
    teaching = Teacher(backend, max_repairs=2).write_rules(task)
    assert not teaching.ok and len(teaching.rounds) == 3 and "no program found" in teaching.diagnostics


class _Handler(http.server.BaseHTTPRequestHandler):
    script: list = []  # (status, body, delay) per request
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        status, answer, delay = type(self).script.pop(0) if type(self).script else (200, PROGRAM, 0)
        time.sleep(delay)
        payload = json.dumps({"choices": [{"message": {"content": answer}}]} if status == 200 else {"error": answer})
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.script, _Handler.seen = [], []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", _Handler
    httpd.shutdown()
    httpd.server_close()


def test_http_recorded_answer_with_image(server, task):
    url, handler = server
    handler.script = [(200, fence(PROGRAM), 0)]
    backend = OpenAIBackend(url, "qwen2.5-vl", timeout=5, retries=0)
    assert backend.complete([{"role": "user", "content": "hi"}], task.first_frame) == fence(PROGRAM)
    content = handler.seen[0]["messages"][0]["content"]
    assert handler.seen[0]["model"] == "qwen2.5-vl"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_http_500_then_success(server):
    url, handler = server
    handler.script = [(500, "overloaded", 0), (200, "fine", 0)]
    assert (
        OpenAIBackend(url, "m", timeout=5, retries=2, backoff=0.01).complete([{"role": "user", "content": "x"}])
        == "fine"
    )
    assert len(handler.seen) == 2


def test_http_timeout_then_gives_up(server):
    url, handler = server
    handler.script = [(200, "late", 1.5), (200, "late", 1.5)]
    backend = OpenAIBackend(url, "m", timeout=0.3, retries=1, backoff=0.01)
    with pytest.raises(BackendError, match="within 0.3 s"):
        backend.complete([{"role": "user", "content": "x"}])


def test_http_client_error_is_not_retried(server):
    url, handler = server
    handler.script = [(401, "bad key", 0)]
    with pytest.raises(BackendError, match="refused the request.*401"):
        OpenAIBackend(url, "m", timeout=5, retries=3, backoff=0.01).complete([{"role": "user", "content": "x"}])
    assert len(handler.seen) == 1


def test_http_unreachable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(BackendError, match="cannot reach"):
        OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", timeout=2, retries=0).complete(
            [{"role": "user", "content": "x"}]
        )


def test_constrained_decoding_always_parses():
    tokenizer = rule_tokenizer()
    model = tiny_causal_lm(len(tokenizer))
    messages = [{"role": "user", "content": "Write the rules.\n"}]
    parsed = {True: 0, False: 0}
    for constrained in (True, False):
        for seed in range(20):
            backend = TransformersBackend.from_parts(
                model, tokenizer, constrained=constrained, max_new_tokens=160, temperature=1.0, seed=seed
            )
            text = backend.complete(messages)
            try:
                parse(Source(text))
                parsed[constrained] += 1 if text.strip() else 0
            except ParseError:
                pass
    print(f"random tiny LM: constrained {parsed[True]}/20 parse, unconstrained {parsed[False]}/20")
    assert parsed[True] == 20


def test_local_vision_language_model_with_image(tmp_path, task):
    """A tiny random LLaVA-style VLM saved and loaded with from_pretrained: the image goes through the
    processor's chat template, and every constrained answer parses."""
    folder = tiny_vlm(tmp_path / "vlm")
    messages = [{"role": "system", "content": "You write rules."}, {"role": "user", "content": "Write the rules."}]
    for seed in range(5):
        backend = TransformersBackend(str(folder), constrained=True, max_new_tokens=120, temperature=1.0, seed=seed)
        assert backend.vision
        text = backend.complete(messages, task.first_frame)
        assert text.strip()
        parse(Source(text))


def test_cli_palette_extract_teach(tmp_path, task, server):
    assert "#ff0000" in runner.invoke(app, ["palette", str(task.path / "first_frame.png")]).stdout
    raw = tmp_path / "answer.txt"
    raw.write_text("Here you go:\n" + fence(PROGRAM) + "\nGood luck!")
    out = tmp_path / "maze.rule"
    result = runner.invoke(app, ["extract", str(raw), "-o", str(out)])
    assert result.exit_code == 0 and out.read_text().strip() == PROGRAM
    assert runner.invoke(app, ["extract", str(raw), "-o", str(out)]).exit_code == 2  # never overwrites
    bad = tmp_path / "bad.txt"
    bad.write_text(fence(PROGRAM.replace("inside(agent, goal)", "inside(agnt, goal)")))
    result = runner.invoke(app, ["extract", str(bad), "-o", str(tmp_path / "bad.rule")])
    assert result.exit_code == 1 and "E201" in result.stderr and not (tmp_path / "bad.rule").exists()
    shown = runner.invoke(app, ["teach", str(task.path), "--show-prompt"])
    assert shown.exit_code == 0 and "Task: Move the red agent" in shown.stdout
    url, handler = server
    handler.script = [(200, fence(PROGRAM.replace("persists(agent)", "persist(agent)")), 0), (200, fence(PROGRAM), 0)]
    taught = tmp_path / "taught.rule"
    result = runner.invoke(app, ["teach", str(task.path), "--base-url", url, "--model", "m", "-o", str(taught)])
    assert result.exit_code == 0, result.output
    assert taught.read_text().strip() == PROGRAM
    transcript = json.loads((tmp_path / "taught.rule.teach.json").read_text())
    assert transcript["ok"] and len(transcript["rounds"]) == 2 and "E204" in transcript["rounds"][0]["diagnostics"]
    handler.script = [(200, "no idea", 0)] * 3
    never = tmp_path / "never.rule"
    result = runner.invoke(app, ["teach", str(task.path), "--base-url", url, "-o", str(never), "--max-repairs", "2"])
    assert result.exit_code == 1 and not never.exists() and "never.rule.teach.json" in result.stderr
