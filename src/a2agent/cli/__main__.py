from a2agent.cli import main

main()
