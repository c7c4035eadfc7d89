"""`Teacher.write_rules(task)`: prompt the backend, extract and check the program, repair with
diagnostics for a bounded number of rounds; keep the transcript of every round."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ruledsl.diagnostics import render_text
from ruledsl.teacher.backends import Backend
from ruledsl.teacher.extract import Extraction, ExtractionError, extract
from ruledsl.teacher.palette import palette, palette_text
from ruledsl.teacher.prompt import SYSTEM, build_prompt, repair_message


@dataclass
class Round:
    prompt: str
    answer: str
    program: str | None
    diagnostics: str
    ok: bool


@dataclass
class Teaching:
    ok: bool
    program: str | None  # the last extracted program (checked clean when ok)
    rounds: list[Round] = field(default_factory=list)
    diagnostics: str = ""  # of the last round, when not ok

    def transcript(self) -> dict:
        return {"ok": self.ok, "rounds": [vars(r) for r in self.rounds]}


def diagnostics_text(extraction: Extraction) -> str:
    if extraction.checked is None:
        return extraction.reason or "no program found"
    return (
        render_text(extraction.checked.diagnostics, extraction.checked.source) if extraction.checked.diagnostics else ""
    )


class Teacher:
    def __init__(self, backend: Backend, max_repairs: int = 2):
        self.backend, self.max_repairs = backend, max_repairs

    @staticmethod
    def prompt_for(task) -> str:
        """The prompt for a task: no backend needed (`teach --show-prompt`)."""
        return build_prompt(task.prompt, palette_text(palette(task.first_frame)))

    def write_rules(self, task) -> Teaching:
        """`task`: anything with `.prompt` and `.first_frame` (uint8 [H, W, 3]), e.g. a task folder."""
        prompt = self.prompt_for(task)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        teaching = Teaching(False, None)
        for _ in range(self.max_repairs + 1):
            answer = self.backend.complete(messages, task.first_frame)
            try:
                extraction = extract(answer, name="answer.rule")
            except ExtractionError as error:
                extraction = Extraction(None, None, 0, str(error))
            text = diagnostics_text(extraction)
            teaching.rounds.append(Round(messages[-1]["content"], answer, extraction.program, text, extraction.ok))
            teaching.program, teaching.diagnostics = extraction.program, text
            if extraction.ok:
                teaching.ok = True
                return teaching
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": repair_message(text)}]
        return teaching


def save_transcript(teaching: Teaching, output: Path) -> Path:
    path = output.with_name(output.name + ".teach.json") if output.suffix != ".json" else output
    path.write_text(json.dumps(teaching.transcript(), indent=1) + "\n", encoding="utf-8")
    return path
