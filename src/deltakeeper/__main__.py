from deltakeeper.cli import main

main()
