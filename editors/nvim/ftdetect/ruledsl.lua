-- .rule files are ruledsl programs.
vim.filetype.add({ extension = { rule = "ruledsl" } })
