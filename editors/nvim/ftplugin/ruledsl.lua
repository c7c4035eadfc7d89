-- ruledsl buffers: `#` comments, and the language server `ruledsl lsp` (on PATH, or set
-- vim.g.ruledsl_lsp_cmd = { "/path/to/.venv/bin/ruledsl", "lsp" }). One server per project root.
vim.bo.commentstring = "# %s"
local file = vim.api.nvim_buf_get_name(0)
local marker = vim.fs.find({ ".git", "pyproject.toml" }, { upward = true, path = vim.fs.dirname(file) })[1]
vim.lsp.start({
  name = "ruledsl",
  cmd = vim.g.ruledsl_lsp_cmd or { "ruledsl", "lsp" },
  root_dir = marker and vim.fs.dirname(marker) or vim.fn.getcwd(),
})
