"""Data: download (mirrors, verification), idx (parse), prepare (scale, split)."""
