from paftrace.entry import run

run()
