from paftrace.cli import main

main()
