"""ruledsl.runtime: test-time optimization of video generators against compiled rules.

    from ruledsl.runtime import optimize
    result = optimize(program, "data/maze/00000")              # the built-in reasoner, LoRA, 16 steps

Modules: `generators.py` (the VideoGenerator interface with the one sampling loop, the reasoner's
adapter), `wan.py`, `cogvideox.py`, `ltx.py` (diffusers adapters), `load.py` (a model folder -> its
generator), `reasoner.py` (the small model), `lora.py` (peft), `settings.py` (defaults),
`loop.py` (the optimizer and baselines), `run.py` (outputs, resume), `vqa.py` (a vision-language model
as the scorer of `ask` atoms).
scripts/train_reasoner.py reproduces the shipped weights.
"""

from __future__ import annotations


def optimize(program, task, model=None, budget=None, settings=None, **kwargs):
    """`program`: a CompiledProgram; `task`: a task folder path, a Task, or a Condition; `model`: a
    VideoGenerator, a model folder (a reasoner or a diffusers image-to-video pipeline, loaded by
    `load.load_generator` on cuda when available, float32), or None (the built-in reasoner).
    Returns a Result."""
    from pathlib import Path

    from ruledsl.runtime.generators import Condition, VideoGenerator, condition_from_task
    from ruledsl.runtime.load import load_generator
    from ruledsl.runtime.loop import optimize as run

    if isinstance(task, (str, Path)):
        from ruledsl.tasks.layout import read_task

        task = read_task(task)
    condition = task if isinstance(task, Condition) else condition_from_task(task)
    generator = model if isinstance(model, VideoGenerator) else load_generator(model)
    return run(program, condition, generator, budget, settings, **kwargs)
