"""The language server for `.rule` files (`ruledsl lsp`).

- `analysis`: diagnostics (exactly `ruledsl check`'s) and the symbol index of one document; no pygls.
- `worker`: runs analyses in a child process, so a slow check never blocks the editor and a stale one
  can be stopped.
- `completion`: what may be typed at the cursor, read from the text before it (works on broken text).
- `server`: the pygls server: document sync, debouncing, and every LSP feature.

Nothing here imports torch: the server starts as fast as `ruledsl check`.
"""
