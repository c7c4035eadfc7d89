"""The teacher: from a VLM's (or a person's) output to a checked .rule program.

- `palette.py`: distinct colours of the first frame (hex, area, bounding box): entity hints
- `prompt.py`: the prompt (language reference generated from the signature table, examples, palette, task)
- `extract.py`: pull a program out of untrusted free text and check it
- `backends.py`: an OpenAI-compatible HTTP client, a local transformers model with grammar-constrained
  decoding (llguidance, grammar derived from grammars/rule.lark), and a scripted backend for tests
- `teach.py`: `Teacher.write_rules(task)`: prompt, answer, extract, check, repair rounds, transcript
"""
