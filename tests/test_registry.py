"""The built-in registry: one entry per built-in, read by checker, docs, teacher and compiler."""

import inspect
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

import ruledsl
from ruledsl import RuleError
from ruledsl.docs import builtins_markdown
from ruledsl.signatures import BUILTINS, KIND_RETURNS, P, Param, Type, builtin
from ruledsl.teacher.prompt import reference


def test_registry_docs_and_teacher_reference_load_without_torch():
    imports = "import sys, ruledsl.signatures, ruledsl.docs, ruledsl.teacher.prompt as t; t.reference()"
    code = imports + "; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'kornia'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_entry_is_complete(name):
    entry = BUILTINS[name]
    assert entry.name == name and entry.returns is KIND_RETURNS[entry.kind]
    assert entry.doc.endswith(".") and name in entry.example
    assert entry.signature().startswith(f"{name}(") and entry.signature().endswith(f"-> {entry.returns.value}")
    assert all(p.doc for p in entry.params)
    assert callable(entry.lower)


def test_a_lowering_must_take_the_entry_parameters():
    with pytest.raises(TypeError, match=r"lowering of `bad` takes \(ev, x\), expected \(ev, r\)"):

        @builtin("bad", "measure", (Param("r", (Type.REGION,), "a region"),), "Bad.", "bad(a)")
        def _bad(ev, x):
            return x

    assert "bad" not in BUILTINS


@pytest.fixture
def brightness():
    """A built-in added the documented way (one decorated function); removed afterwards."""

    @builtin(
        "brightness",
        "measure",
        (Param("r", (Type.REGION,), "the region"),),
        "Mean CIE L* (0 black to 100 white) of the region's pixels.",
        "brightness(agent) >= 50",
    )
    def _brightness(ev, r):
        m = ev.mask(r)
        return (m * ev.lab[:, :, 0]).sum((-2, -1)) / (m.sum((-2, -1)) + P.EPS)

    yield BUILTINS["brightness"]
    del BUILTINS["brightness"]


def test_one_new_entry_reaches_checker_docs_teacher_and_compiler(brightness):
    assert "`brightness(r: region) -> number`" in builtins_markdown()
    assert "brightness(r: region) -> number  # Mean CIE L*" in reference()
    with pytest.raises(RuleError, match="argument `r` of `brightness` must be a region"):
        ruledsl.loads("goal g: at end brightness(0.5) >= 1\n")
    program = ruledsl.loads(
        "region left = box(0, 0, 0.5, 1)\nregion right = box(0.5, 0, 1, 1)\n"
        "goal g: at end brightness(left) >= 90 and brightness(right) <= 10\n"
    ).compile()
    video = torch.zeros(1, 2, 3, 4, 8)
    video[..., :4] = 1.0  # left half white, right half black
    assert bool(program(video).satisfied[0])
    video[..., 0:2, :, :4] = 0.0  # left half blue: L* about 32
    assert not bool(program(video).satisfied[0])


def _frames(*boxes_per_frame, size=10):
    """White frames with a red square of pixels per frame: (row0, col0, side) or None."""
    video = torch.ones(1, len(boxes_per_frame), 3, size, size)
    for t, box in enumerate(boxes_per_frame):
        if box is not None:
            r, c, side = box
            video[0, t, 1:, r : r + side, c : c + side] = 0.0
    return video


def test_overlap_is_the_share_of_a_inside_b():
    """Against hand counts of pixels: the left half of a 10 px frame is columns 0-4."""
    program = ruledsl.loads(
        "object a = color(#ff0000)\nregion left = box(0, 0, 0.5, 1)\ngoal g: at end overlap(a, left) >= 0\n"
    ).compile(surrogate=None)
    spatial, _ = program.evaluation(_frames((2, 1, 4), (2, 3, 4), (2, 5, 4), (2, 4, 2), None))
    overlap = spatial.number(program.rules[0].formula.body.left)
    expected = torch.tensor([[1.0, 2 / 4, 0.0, 1 / 2, 0.0]])  # inside, half, outside, half, absent
    torch.testing.assert_close(overlap, expected, atol=1e-4, rtol=0)


def test_overlap_of_a_region_with_itself_is_one_and_reads_as_a_graded_inside():
    source = (
        "object a = color(#ff0000)\nregion left = box(0, 0, 0.5, 1)\n"
        "goal g: at end overlap(a, a) >= 0.99 and overlap(a, left) + overlap(a, not left) >= 0.99\n"
        "process p: at end (overlap(a, left) >= 0.9) implies inside(a, left)\n"
    )
    report = ruledsl.loads(source).compile()(_frames((2, 1, 4), (2, 3, 4)))
    assert bool(report.satisfied[0])


def test_docs_show_the_overlap_entry_as_it_is_in_the_registry():
    """docs/compiler.md "Adding a built-in" quotes the entry; it must not drift from the code."""
    assert inspect.getsource(BUILTINS["overlap"].lower) in (ROOT / "docs" / "compiler.md").read_text()
