"""`ruledsl reasoner sample` and `reasoner info` through the CLI, on a tiny random reasoner saved to disk."""

import torch
from typer.testing import CliRunner

from ruledsl.cli import app
from ruledsl.compiler.video_io import read_video
from ruledsl.runtime.reasoner import ReasonerModel
from ruledsl.tasks import generate
from ruledsl.tasks.layout import write_task

runner = CliRunner()


def test_reasoner_sample_writes_a_video_from_the_task_first_frame(tmp_path):
    torch.manual_seed(0)
    ReasonerModel(channels=(16, 16), embed=16, heads=2, size=16, frames=4).save_pretrained(tmp_path / "model")
    task = write_task(generate("maze", 0, 0, "test"), tmp_path / "task")
    out = tmp_path / "v.gif"
    args = ["reasoner", "sample", str(task), "--out", str(out), "--model", str(tmp_path / "model"), "--steps", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    video = read_video(out)
    assert video.shape[1:] == (3, 16, 16) and video.shape[0] >= 2
    assert runner.invoke(app, args).exit_code == 2  # exists: not overwritten without --force
    info = runner.invoke(app, ["reasoner", "info", "--model", str(tmp_path / "model")])
    assert info.exit_code == 0 and "no model card" in info.output


def test_reasoner_sample_through_a_saved_lora(tmp_path):
    from helpers import tiny_model

    from ruledsl.runtime.generators import ReasonerGenerator
    from ruledsl.runtime.lora import attach_lora, lora_state, save_lora

    model = tiny_model()  # non-zero outputs: a LoRA changes what it samples
    model.save_pretrained(tmp_path / "model")
    params = attach_lora(model, ReasonerGenerator.lora_targets, 4)
    with torch.no_grad():
        for param in params:
            param.add_(0.5 * torch.randn_like(param))
    save_lora(lora_state(model), tmp_path / "lora.safetensors")
    (tmp_path / "not_a_lora.safetensors").write_bytes(b"garbage")
    task = write_task(generate("maze", 0, 0, "test"), tmp_path / "task")
    base = ["reasoner", "sample", str(task), "--model", str(tmp_path / "model"), "--steps", "2", "--seed", "3"]
    plain = runner.invoke(app, [*base, "--out", str(tmp_path / "plain.gif")])
    tuned = runner.invoke(
        app, [*base, "--out", str(tmp_path / "tuned.gif"), "--lora", str(tmp_path / "lora.safetensors")]
    )
    assert plain.exit_code == 0 and tuned.exit_code == 0, tuned.output
    assert not torch.equal(read_video(tmp_path / "plain.gif"), read_video(tmp_path / "tuned.gif"))
    bad = runner.invoke(
        app, [*base, "--out", str(tmp_path / "bad.gif"), "--lora", str(tmp_path / "not_a_lora.safetensors")]
    )
    assert bad.exit_code == 2 and "not_a_lora.safetensors" in bad.output and not (tmp_path / "bad.gif").exists()


def test_reasoner_sample_draws_a_guided_video_again_from_its_seed_and_draws(tmp_path):
    """A guided video (report.json's best_seed and best_draws) is drawn again by `reasoner sample --draws`."""
    from ruledsl.compiler.video_io import write_video
    from ruledsl.runtime.bench import example_program
    from ruledsl.runtime.frame_guide import FrameGuide
    from ruledsl.runtime.generators import ReasonerGenerator, condition_from_task
    from ruledsl.tasks.layout import read_task

    instance = generate("two_targets", 1, 1, "train")
    task = write_task(instance, tmp_path / "task")
    condition = condition_from_task(read_task(task))
    guide = FrameGuide(example_program("two_targets", instance.to_dict(), 64), retries=2)
    seed, guided = next(
        (s, g) for s in range(8) if any((g := guide.sample(ReasonerGenerator(), condition, s)).attempts)
    )
    write_video(tmp_path / "guided.gif", guided.video[0])
    draws = ",".join(map(str, guided.attempts))
    base = ["reasoner", "sample", str(task), "--seed", str(seed)]
    again = runner.invoke(app, [*base, "--draws", draws, "--out", str(tmp_path / "again.gif")])
    plain = runner.invoke(app, [*base, "--out", str(tmp_path / "plain.gif")])
    assert again.exit_code == 0 and plain.exit_code == 0, again.output
    assert torch.equal(read_video(tmp_path / "again.gif"), read_video(tmp_path / "guided.gif"))
    assert not torch.equal(read_video(tmp_path / "plain.gif"), read_video(tmp_path / "guided.gif"))
    for bad in (draws + ",0", "1,x"):  # one draw too many; not a number
        result = runner.invoke(app, [*base, "--draws", bad, "--out", str(tmp_path / "bad.gif")])
        assert result.exit_code == 2 and "--draws" in result.output and not (tmp_path / "bad.gif").exists()


def test_size_samples_a_v2_reasoner_at_n_and_a_resume_must_keep_it(tmp_path):
    from conftest import ROOT

    from ruledsl.runtime.latent_reasoner import LatentReasonerModel

    torch.manual_seed(0)
    codec = {"encoder_channels": 8, "decoder_channels": 8, "latent_channels": 4}
    v2 = LatentReasonerModel(codec_config=codec, channels=16, depth=1, embed=16, heads=2, size=32, frames=4, steps=2)
    v2.save_pretrained(tmp_path / "v2")
    ReasonerModel(channels=(16, 16), embed=16, heads=2, size=16, frames=4).save_pretrained(tmp_path / "v1")
    task = write_task(generate("maze", 0, 0, "test"), tmp_path / "task")
    sample = ["reasoner", "sample", str(task), "--model", str(tmp_path / "v2"), "--force", "--out"]
    assert runner.invoke(app, [*sample, str(tmp_path / "a.gif"), "--size", "48"]).exit_code == 0
    assert read_video(tmp_path / "a.gif").shape[1:] == (3, 48, 48)  # trained at 32
    off = runner.invoke(app, [*sample, str(tmp_path / "b.gif"), "--size", "44"])
    assert off.exit_code == 2 and "multiple of 8" in off.output and not (tmp_path / "b.gif").exists()
    v1 = runner.invoke(app, ["reasoner", "sample", str(task), "--model", str(tmp_path / "v1"), "--size", "32",
                             "--out", str(tmp_path / "c.gif")])  # fmt: skip
    assert v1.exit_code == 2 and "v2 reasoner" in v1.output

    run = ["optimize", str(ROOT / "examples" / "maze.rule"), "--task", str(task), "--model", str(tmp_path / "v2"),
           "--out", str(tmp_path / "run"), "--steps", "0"]  # fmt: skip
    first = runner.invoke(app, [*run, "--size", "48"])
    assert first.exit_code in (0, 1), first.output
    assert read_video(tmp_path / "run" / "best.mp4").shape[-2:] == (48, 48)
    again = runner.invoke(app, [*run, "--resume"])  # without --size: another resolution, another curve
    assert again.exit_code == 2 and "--size" in again.output and "48" in again.output
