"""Reference galleries offline: fill one from a folder, measure few-shot recognition."""
