"""ruledsl.compiler: checked program -> IR -> exact/smooth robustness and losses (torch, kornia)."""
