from paftrace.cli import run

run()
