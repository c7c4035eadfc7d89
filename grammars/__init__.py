"""Package data: the ruledsl grammar (rule.lark)."""
