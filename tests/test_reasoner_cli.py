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
