"""`ask` atoms: placement over windows, the VLM scorer (tiny random LLaVA), preprocessing, errors, CLI, optimize."""

import json

import numpy as np
import pytest
import torch
from tiny_lm import tiny_vlm
from typer.testing import CliRunner

import ruledsl
from ruledsl.cli import app
from ruledsl.compiler.asks import spread
from ruledsl.compiler.ir import CompileError
from ruledsl.runtime.vqa import PixelTransform, VLMLoadError, VLMScorer

runner = CliRunner()
WORDS = ("yes", "no", "Yes", "No")


@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory):
    return tiny_vlm(tmp_path_factory.mktemp("vlm"), words=WORDS)


@pytest.fixture(scope="module")
def scorer(vlm_folder):
    return VLMScorer.load(vlm_folder, device="cpu")


class Brightness:
    """A stand-in VQA model: margin = mean brightness of the frames it is shown − 0.5; records what it saw."""

    def __init__(self):
        self.calls = []

    def prepare(self, question, frames):
        self.calls.append(("prepare", question, frames))

    def margins(self, question, clips):
        self.calls.append(("margins", question, tuple(clips.shape)))
        return clips.mean(dim=(1, 2, 3, 4)) - 0.5


def ramp(frames=8, size=8):
    """Frame t has brightness t / (frames - 1): dark at the start, bright at the end."""
    levels = torch.linspace(0, 1, frames)
    return levels.view(1, frames, 1, 1, 1).expand(1, frames, 3, size, size).clone()


# ---- placement and semantics (no model) ---------------------------------------------------------


def test_video_level_ask_sees_a_clip_spread_over_its_window():
    fake = Brightness()
    program = ruledsl.loads('goal g: ask "Is it bright?"\nprocess p: during [0.5, end] ask "Is it bright?"\n')
    report = program.compile(vqa=fake, ask_frames=3)(ramp())
    assert ("prepare", "Is it bright?", 3) in fake.calls
    shapes = [c[2] for c in fake.calls if c[0] == "margins"]
    assert shapes == [(1, 3, 3, 8, 8), (1, 3, 3, 8, 8)]  # one clip of 3 frames per window
    # Whole video: frames 0, 3.5→4, 7 average ~0.52 > 0.5; the second half is bright.
    whole = float(ramp()[0, spread(0, 7, 3)].mean()) - 0.5
    assert float(report.rules["g"].robustness[0]) == pytest.approx(whole, abs=1e-6)
    assert float(report.rules["p"].robustness[0]) > 0.2
    assert spread(4, 7, 3) == [4, 6, 7] and spread(2, 2, 3) == [2, 2, 2]


def test_ask_under_temporal_operators_is_asked_per_frame():
    fake = Brightness()
    program = ruledsl.loads(
        'goal end_bright: at end ask "Is it bright?"\n'
        'process always_bright: always ask "Is it bright?"\n'
        'process once_dark: eventually not ask "Is it bright?"\n'
    )
    report = program.compile(vqa=fake)(ramp())
    assert bool(report.rules["end_bright"].verdict[0])  # the last frame only
    assert not bool(report.rules["always_bright"].verdict[0])  # the first frames are dark
    assert bool(report.rules["once_dark"].verdict[0])
    assert report.rules["always_bright"].violations[0] == [(0, 3)]  # frames 0..3 have brightness < 0.5
    per_frame = [c[2] for c in fake.calls if c[0] == "margins"]
    # `at end` asks about one frame; `always` about every frame (frame 7 is then already known).
    assert sorted(per_frame) == sorted([(1, 1, 3, 8, 8), (7, 1, 3, 8, 8)])
    windowed = Brightness()
    report = ruledsl.loads('process late: during [0.5, end] always ask "Is it bright?"\n').compile(vqa=windowed)(ramp())
    assert [c[2] for c in windowed.calls if c[0] == "margins"] == [(4, 1, 3, 8, 8)]  # only the window's frames
    assert bool(report.rules["late"].verdict[0])


def test_ask_mixes_with_geometry_and_the_smooth_loss_has_gradient():
    fake = Brightness()
    program = ruledsl.loads(
        'object light = color(#ffffff, tol=40)\nprocess p: always (ask "Is it bright?" or area(light) >= 0.5)\n'
    )
    video = ramp().requires_grad_(True)
    report = program.compile(vqa=fake)(video)
    report.loss.backward()
    assert torch.isfinite(video.grad).all() and video.grad.abs().sum() > 0


def test_a_program_with_ask_and_no_model_names_its_rules():
    program = ruledsl.loads('goal a: ask "Is it done?"\nprocess b: always ask "Is it ok?"\ngoal c: true\n')
    with pytest.raises(CompileError, match=r"rules `a`, `b` use `ask`.*--vlm PATH"):
        program.compile()
    assert "`c`" not in str(pytest.raises(CompileError, program.compile).value)


def test_empty_question_is_a_check_error():
    result = ruledsl.check(ruledsl.Source('goal g: ask " "\n', "q.rule"))
    assert [(d.code, d.span.line, d.span.column) for d in result.errors] == [("E309", 1, 9)]
    assert "yes/no question" in result.errors[0].hint


# ---- the VLM scorer ---------------------------------------------------------------------------


def test_margins_are_finite_and_gradients_reach_the_pixels(scorer):
    clips = torch.rand(3, 2, 3, 40, 56, requires_grad=True)
    margins = scorer.margins("Is the red agent pushing the blue box?", clips)
    assert margins.shape == (3,) and torch.isfinite(margins).all()
    margins.sum().backward()
    assert torch.isfinite(clips.grad).all() and clips.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in scorer.model.parameters()) and not scorer.model.training
    # Checkpointed chunks (the default) give the same gradient as keeping every activation.
    scorer.checkpoint, scorer.batch_size = False, 2
    try:
        again = clips.detach().clone().requires_grad_(True)
        scorer.margins("Is the red agent pushing the blue box?", again).sum().backward()
    finally:
        scorer.checkpoint, scorer.batch_size = True, 8
    assert torch.allclose(again.grad, clips.grad, atol=1e-6)


@pytest.mark.parametrize("resample", [3, 2, 1])  # bicubic (the tiny model's), bilinear, lanczos
def test_torch_preprocessing_matches_the_processor(scorer, resample):
    image_processor = scorer.processor.image_processor
    saved = image_processor.resample
    image_processor.resample = resample
    try:
        transform = PixelTransform.from_processor(image_processor)
        rng = np.random.default_rng(resample)
        for h, w in [(45, 61), (32, 32), (90, 160), (20, 30), (257, 300)]:
            frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
            theirs = image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
            ours = transform(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)
            assert ours.shape == theirs.shape
            assert float((ours - theirs).abs().max()) < 1e-4, (h, w)
    finally:
        image_processor.resample = saved


def _force(scorer, answer):
    """Make the model answer `answer` whatever it sees: a large logit on that answer's tokens."""
    ids = scorer.answers[answer]

    def hook(module, inputs, output):
        output = output.clone()
        output[..., ids] += 50.0
        return output

    return scorer.model.get_output_embeddings().register_forward_hook(hook)


def test_verdict_flips_when_the_answer_logits_are_forced(scorer):
    program = ruledsl.loads('goal g: at end ask "Is the box on the pad?"\nprocess p: always ask "Is the box there?"\n')
    compiled = program.compile(vqa=scorer)
    video = torch.rand(1, 4, 3, 32, 48)
    for answer, holds in (("yes", True), ("no", False)):
        handle = _force(scorer, answer)
        try:
            report = compiled(video)
        finally:
            handle.remove()
        for rule in report.rules.values():
            assert bool(rule.verdict[0]) is holds
            assert (float(rule.robustness[0]) > 40) is holds and (float(rule.robustness[0]) < -40) is not holds


def test_ask_only_program_loss_is_the_yes_likelihood(scorer):
    """With margin 0 and scale 1, a rule `ask q` has loss −log(p(yes) / (p(yes) + p(no))): the reference reward."""
    question = "Is the agent at the goal?"
    video = torch.rand(2, 3, 3, 32, 32)
    compiled = ruledsl.loads(f'goal g: ask "{question}"\n').compile(vqa=scorer, margin=0.0, scale=1.0, ask_frames=2)
    loss = compiled(video).rules["g"].loss
    text = scorer.text_inputs(question, 2, 32, 32)
    pixels = scorer.transform(video[:, [0, 2]].reshape(4, 3, 32, 32))
    with torch.no_grad():
        logits = scorer.model(**{k: v.expand(2, -1) for k, v in text.items()}, pixel_values=pixels).logits[:, -1]
    p = logits.softmax(-1)
    p_yes, p_no = p[:, scorer.answers["yes"]].sum(-1), p[:, scorer.answers["no"]].sum(-1)
    assert torch.allclose(loss, -torch.log(p_yes / (p_yes + p_no)), atol=1e-5)


# ---- errors -----------------------------------------------------------------------------------


def test_unreachable_folder_and_non_model_folder(tmp_path):
    with pytest.raises(VLMLoadError, match="no such folder"):
        VLMScorer.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VLMLoadError, match="no config.json"):
        VLMScorer.load(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(VLMLoadError, match="cannot load it"):
        VLMScorer.load(tmp_path / "broken")


def test_tokenizer_without_yes_and_no(tmp_path):
    with pytest.raises(VLMLoadError, match="no single token for 'yes' or 'no'"):
        VLMScorer.load(tiny_vlm(tmp_path / "plain"))  # the byte-level BPE spells "yes" in three tokens


def test_question_too_long_for_the_context(tmp_path):
    short = VLMScorer.load(tiny_vlm(tmp_path / "short", words=WORDS, context=64))
    path = tmp_path / "long.rule"
    path.write_text('goal ok: ask "Is it done?"\nprocess long: always ask "' + "Is the box red " * 20 + '?"\n')
    program = ruledsl.load(path)
    with pytest.raises(CompileError, match=r"long\.rule:2:22: .*longer than the model's context of 64 tokens"):
        program.compile(vqa=short)


# ---- command line and optimization ------------------------------------------------------------


def _video(tmp_path):
    from ruledsl.video import write_frames

    frames = (torch.rand(5, 32, 48, 3) * 255).to(torch.uint8).numpy()
    return write_frames(tmp_path / "clip.gif", frames, fps=4)


def test_cli_eval_with_and_without_vlm(tmp_path, vlm_folder):
    rules = tmp_path / "demo.rule"
    rules.write_text(
        "object agent = color(#ff0000)\n"
        'process pushes: during [0.2, 0.8] ask "Is the red agent pushing the blue box?"\n'
        'goal done: at end ask "Is the blue box on the light-blue pad?" weight 0.5\n'
        "process stays: always persists(agent)\n"
    )
    video = _video(tmp_path)
    missing = runner.invoke(app, ["eval", str(rules), str(video)])
    assert missing.exit_code == 2 and "`pushes`, `done`" in missing.stderr and "--vlm" in missing.stderr
    gone = runner.invoke(app, ["eval", str(rules), str(video), "--vlm", str(tmp_path / "nowhere")])
    assert gone.exit_code == 2 and "no such folder" in gone.stderr
    result = runner.invoke(
        app, ["eval", str(rules), str(video), "--vlm", str(vlm_folder), "--json", "--ask-frames", "2"]
    )
    assert result.exit_code in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert set(report["rules"]) == {"pushes", "done", "stays"}
    assert all(np.isfinite(r["robustness"][0]) for r in report["rules"].values())


def test_optimize_with_an_ask_rule_takes_steps(tmp_path, scorer):
    from test_runtime import tiny_model

    from ruledsl.runtime.generators import Condition, ReasonerGenerator
    from ruledsl.runtime.loop import Budget, Settings, optimize

    program = ruledsl.loads(
        "object agent = color(#ff0000, tol=40)\n"
        'goal g: at end ask "Is the red agent on the goal?"\n'
        "process p: always area(agent) >= 0.99\n"  # never holds: the run does not stop early
    ).compile(vqa=scorer)
    generator = ReasonerGenerator(model=tiny_model(), steps=2)
    condition = Condition(torch.rand(3, 32, 32), "prompt", "maze", frames=4)
    result = optimize(program, condition, generator, Budget(steps=2), Settings(method="lora", lr=0.05, plateau=99))
    steps = [s for s in result.history if not s.skipped]
    assert len(steps) >= 2 and all(np.isfinite(s.loss) for s in steps)
    ask_losses = [s.rule_losses["g"] for s in steps]
    assert ask_losses[0] != ask_losses[-1]  # same seed every rollout: the LoRA moved through the VLM's gradient


def test_cli_optimize_with_vlm(tmp_path, vlm_folder):
    from test_runtime import tiny_model

    from ruledsl.tasks import generate
    from ruledsl.tasks.layout import write_task

    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir)
    task = write_task(generate("maze", 0, 0, "test"), tmp_path / "task", size=(32, 32), frames=4)
    rules = tmp_path / "r.rule"
    rules.write_text('goal g: at end ask "Is the red agent on the green goal?"\n')
    base = ["optimize", str(rules), "--task", str(task), "--model", str(model_dir), "--method", "lora", "--steps", "1"]
    missing = runner.invoke(app, [*base, "--out", str(tmp_path / "no_vlm")])
    assert missing.exit_code == 2 and "`g`" in missing.stderr and not (tmp_path / "no_vlm" / "report.json").exists()
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "run"), "--vlm", str(vlm_folder)])
    assert result.exit_code in (0, 1), result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "g" in json.dumps(report)


def test_teacher_prompt_offers_ask_only_where_geometry_cannot_say_it():
    from ruledsl.teacher.prompt import build_prompt

    prompt = build_prompt("Push the blue box onto the pad.")
    assert 'ask "' in prompt and "ONLY for a statement that no built-in" in prompt


def test_the_docs_hybrid_demo_checks_and_compiles():
    from pathlib import Path

    demo = ruledsl.load(Path(__file__).resolve().parent.parent / "docs" / "hybrid_demo.rule")
    compiled = demo.compile(vqa=Brightness())
    report = compiled(ramp(frames=6, size=16))
    assert {"pushes", "done", "on_pad", "legal"} <= set(report.rules)
