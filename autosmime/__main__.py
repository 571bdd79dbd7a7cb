from autosmime.cli import main

main()
