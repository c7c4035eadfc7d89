"""Small helpers shared by the tests."""

import json
import subprocess
import sys

from ruledsl.checker import CheckedProgram, check
from ruledsl.source import Source


def checked(text: str) -> CheckedProgram:
    return check(Source(text, "t.rule"))


def codes(text: str) -> list[str]:
    return sorted(d.code for d in checked(text).diagnostics)


def assert_valid_spans(result: CheckedProgram) -> None:
    text = result.source.text
    n_lines = text.count("\n") + 1
    for d in result.diagnostics:
        s = d.span
        assert 0 <= s.start <= s.end <= len(text), d
        assert 1 <= s.line <= s.end_line <= n_lines, d
        assert s.column >= 1 and s.end_column >= 1, d
        # line/column must agree with the offset
        assert result.source.span_at(s.start).line == s.line, d
        assert result.source.span_at(s.start).column == s.column, d


HEAVY_MODULES = ("torch", "kornia", "diffusers", "peft", "transformers")


def heavy_imports(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; the heavy modules (torch and friends) it left imported."""
    probe = f"\nimport json, sys\nprint('HEAVY', json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    result = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.rsplit("HEAVY ", 1)[1])


def tiny_model(seed=0):
    """A tiny random reasoner (16x16, 4 frames) with non-zero outputs (the real init zeroes the last layer)."""
    import torch

    from ruledsl.runtime.reasoner import ReasonerModel

    torch.manual_seed(seed)
    model = ReasonerModel(channels=(16, 16), embed=16, heads=2, size=16, frames=4)
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 0.2)
    return model
