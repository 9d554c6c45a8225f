"""`paftrace explain`: find page allocation failure reports in kernel log text,
decode them for the kernel that printed them, and say what to do.

parse (text -> Report) and analyze (Report -> Explanation) are pure; render
turns explanations into rich, plain or JSON output.
"""
