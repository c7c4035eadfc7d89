"""Regenerate the example videos: python examples/videos/make_videos.py

maze_solved.gif  the agent walks the corridor to the goal (every rule of examples/maze.rule holds)
maze_broken.gif  the agent cuts through a wall, leaves a stray red blob and jumps (several rules fail)
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from scenes import Scene  # noqa: E402  (tests/scenes.py)

from ruledsl.compiler.video_io import write_video  # noqa: E402


def maze(path, stray_at=None):
    scene = Scene(frames=8, px=8, background="black")
    scene.paint("white", [(r, c) for r in (3, 4) for c in range(1, 7)]).paint("green", [(3, 6)])
    scene.sprite("red", path)
    if stray_at is not None:
        scene.sprite("red", [stray_at if t in (4, 5) else None for t in range(8)], {4: 4, 5: 4})
    return scene.render()[0]


if __name__ == "__main__":
    solved = [(3, c) for c in (1, 2, 3, 4, 5, 6, 6, 6)]
    broken = [(3, 1), (3, 2), (2, 2), (2, 3), (3, 5), (3, 6), (3, 6), (3, 6)]
    write_video(HERE / "maze_solved.gif", maze(solved))
    write_video(HERE / "maze_broken.gif", maze(broken, stray_at=(4, 3)))
    print("wrote", HERE / "maze_solved.gif", HERE / "maze_broken.gif")
