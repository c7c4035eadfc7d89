"""ruledsl.runtime: test-time optimization of video generators against compiled rules.

    from ruledsl.runtime import optimize
    result = optimize(program, "data/maze/00000")              # the built-in reasoner, LoRA, 16 steps

Modules: `generators.py` (VideoGenerator interface, adapters), `reasoner.py` (the small model),
`lora.py` (peft), `loop.py` (the loop and baselines), `run.py` (outputs, resume).
scripts/train_reasoner.py reproduces the shipped weights.
"""

from __future__ import annotations


def optimize(program, task, model=None, budget=None, settings=None, **kwargs):
    """`program`: a CompiledProgram; `task`: a task folder path, a Task, or a Condition; `model`: a
    VideoGenerator, a path to a reasoner, or None (the built-in reasoner). Returns a Result."""
    from pathlib import Path

    from ruledsl.runtime.generators import Condition, ReasonerGenerator, VideoGenerator, condition_from_task
    from ruledsl.runtime.loop import optimize as run

    if isinstance(task, (str, Path)):
        from ruledsl.tasks.layout import read_task

        task = read_task(task)
    condition = task if isinstance(task, Condition) else condition_from_task(task)
    generator = model if isinstance(model, VideoGenerator) else ReasonerGenerator(path=model)
    return run(program, condition, generator, budget, settings, **kwargs)
