"""The language server for `.rule` files (`ruledsl lsp`).

- `analysis`: diagnostics (exactly `ruledsl check`'s) and the symbol index of one document; no pygls.
- `worker`: runs analyses in a child process, so a slow check never blocks the editor and a stale one
  can be stopped.
- `completion`: what may be typed at the cursor, and the call it is in, read from the text before it
  (so it works on text that does not parse).
- `positions`: character offsets <-> LSP positions in the encoding the client chose.
- `server`: the pygls server: document sync, debouncing, and every LSP feature.

Nothing here imports torch: the server starts as fast as `ruledsl check`.
"""
