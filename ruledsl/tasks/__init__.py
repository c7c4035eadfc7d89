"""A symbolic video-reasoning task suite in the VBVR-Bench folder layout, with independent scorers.

- `families.py`: seeded generators (maze, grid_path, avoid, two_targets, key_door) -> `Instance`
- `render.py`: an Instance and a per-frame plan -> crisp flat-colour frames (numpy, any size and length)
- `corrupt.py`: plans that break a family's rules (frozen, vanish, duplicate, ...)
- `layout.py`: writing and reading `TASK/00000/{first_frame.png, final_frame.png, ground_truth.mp4, prompt.txt, metadata.json}`
- `scorers.py`: per-family rule-based judges in plain numpy; they never import the compiler

Nothing here imports torch.
"""

__all__ = ["FAMILIES", "SPLITS", "Instance", "generate"]


def __getattr__(name):  # lazy: `ruledsl check` imports the tasks CLI but needs none of this
    if name in __all__:
        from ruledsl.tasks import families

        return getattr(families, name)
    raise AttributeError(f"module 'ruledsl.tasks' has no attribute {name!r}")
