"""ruledsl.runtime: test-time optimization of video generators against compiled rules (not built yet)."""
