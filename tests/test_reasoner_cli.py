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
