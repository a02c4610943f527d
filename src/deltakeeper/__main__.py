from deltakeeper.cli.main import main

main()
